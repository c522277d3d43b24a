"""The catalogue finds every sweep of a root wherever it is: a request the daemon has renamed into spool/accepted/ and
not yet queued (the moment between the rename and the insert, or after a crash between them) is still found by
`sweepd status ID` and counted once; once its row is written, it is the row."""

import json

from conftest import sweepd, write_request
from sweepd import catalogue
from sweepd.paths import Layout
from sweepd.queue import Queue
from sweepd.request import load_request
from sweepd.vocab import ListedState


def test_an_accepted_request_without_its_queue_row_yet_is_found_and_counted_once(tmp_path):
    layout = Layout.resolve(tmp_path)
    layout.accepted.mkdir(parents=True)
    req = write_request(layout.accepted / "abc123def456.toml")
    [e] = catalogue.entries(layout)
    assert (e.id, e.state) == ("abc123def456", ListedState.WAITING)
    r = sweepd("status", "abc123def456", "--root", tmp_path)
    assert r.returncode == 0 and "abc123def456" in r.stdout, r.stdout + r.stderr
    layout.state.mkdir(exist_ok=True)
    q = Queue(layout.queue_db)
    q.add("abc123def456", "local-1", load_request(req))
    q.close()
    [e] = catalogue.entries(layout)  # now the queue row, not a second entry
    assert e.id == "abc123def456" and e.state == "queued"
    counts = json.loads(sweepd("status", "--root", tmp_path, "--json").stdout)["counts"]
    assert {k: v for k, v in counts.items() if v} == {"queued": 1}  # not also "waiting"
