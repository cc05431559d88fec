"""What /proc says about processes and sockets: the one reader the harness and the tools share.

Standard library only (make compare runs without pytest). Each function answers for the moment it
is called; a process that is gone reads as None, 0 or empty, never as an error.
"""
import os
from pathlib import Path


def proc_stat(pid):
    """(state, ppid, pgid) of a process, or None once it is gone."""
    try:
        data = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = data[data.rindex(")") + 2:].split()
    return fields[0], int(fields[1]), int(fields[2])


def all_pids():
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def group_members(pgid):
    """Live (non-zombie) processes of a process group, sorted."""
    return sorted(p for p in all_pids() if (st := proc_stat(p)) and st[2] == pgid and st[0] != "Z")


def children_of(pid):
    """Live (non-zombie) children of a process, sorted."""
    return sorted(p for p in all_pids() if (st := proc_stat(p)) and st[1] == pid and st[0] != "Z")


def zombies_of(pid):
    """Children of a process that have exited and not been reaped yet."""
    return sorted(p for p in all_pids() if (st := proc_stat(p)) and st[1] == pid and st[0] == "Z")


def status_fields(pid, *names):
    """Integer fields of /proc/PID/status (VmRSS in KiB, Threads, voluntary_ctxt_switches), 0
    where missing or once the process is gone."""
    values = dict.fromkeys(names, 0)
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return values
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if key in values:
            values[key] = int(rest.split()[0])
    return values


def rss_kib(pid):
    return status_fields(pid, "VmRSS")["VmRSS"]


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def socket_inodes(pid):
    """The inodes of every socket a process holds (ls -l /proc/PID/fd: socket:[INODE])."""
    out = set()
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return out
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            out.add(target[8:-1])
    return out


def holds_socket(pid, inode):
    """True if the process has the socket with this inode among its open fds."""
    return inode in socket_inodes(pid)


def listening_inodes(port):
    """Inodes of the TCP sockets in LISTEN state on `port`, IPv4 and IPv6 (what ss -ltn shows)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if f[3] == "0A" and int(f[1].rsplit(":", 1)[1], 16) == port:
                found.add(f[9])
    return found


def listener_inode(port):
    """The inode of the one socket listening on `port`; AssertionError if there is none."""
    found = listening_inodes(port)
    if not found:
        raise AssertionError(f"nothing listens on port {port}")
    return min(found)
