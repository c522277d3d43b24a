"""The application layer: what a user can ask of sweepd, each as a function over typed inputs that both the
command line and the daemon call, so a rule has one copy. The CLI parses, calls and prints; the daemon's
intake calls the same admission; tests call these functions in process."""
