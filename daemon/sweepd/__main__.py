from sweepd.cli import main

main()
