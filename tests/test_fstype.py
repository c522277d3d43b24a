"""Filesystem type from mountinfo: network filesystems get no inotify."""

from sweepd.fstype import fs_type, is_network_fs

MOUNTINFO = """\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
40 22 0:35 / /scratch rw,relatime shared:20 - lustre 10.0.0.1@o2ib:/scratch rw
41 22 0:36 / /home rw,relatime shared:21 - nfs4 server:/home rw,vers=4.2
42 41 0:37 / /home/me/local\\040disk rw - xfs /dev/sdb1 rw
"""


def test_longest_mount_prefix_wins():
    assert fs_type("/scratch/me/spool", MOUNTINFO) == "lustre"
    assert fs_type("/home/me/x", MOUNTINFO) == "nfs4"
    assert fs_type("/home/me/local disk/spool", MOUNTINFO) == "xfs"
    assert fs_type("/tmp/x", MOUNTINFO) == "ext4"
    assert fs_type("/scratchy", MOUNTINFO) == "ext4"  # a prefix of the name is not a parent


def test_network_filesystems():
    assert is_network_fs("/scratch/a", MOUNTINFO) and is_network_fs("/home/a", MOUNTINFO)
    assert not is_network_fs("/home/me/local disk", MOUNTINFO) and not is_network_fs("/var", MOUNTINFO)


def test_this_machine_answers():
    assert fs_type("/") != "unknown"
