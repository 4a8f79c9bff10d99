"""A seccomp deny list for jobs, compiled by libseccomp (through ctypes) for ``bwrap --seccomp``.

    fd = seccomp_filter_fd()       # None when libseccomp is not installed (the agent logs it)
    # bwrap --seccomp <fd> ... ; the fd must be inherited (Popen(pass_fds=(fd,)))

Everything is allowed except :data:`DENIED`: the calls a job needs to attack the kernel or the
host rather than to compute (debugging other processes, mounting, new namespaces, loading kernel
code or BPF, the kernel keyring, perf counters, reading or writing other processes' memory,
clocks, swap, reboot). Each fails with ``EPERM``; ``clone3`` fails with ``ENOSYS`` so that libc
falls back to ``clone``, whose namespace flags the filter cannot see inside ``clone3``'s struct.
A name this architecture lacks is skipped. The filter is the sandbox's second wall: bubblewrap
already drops every capability and sets ``no_new_privs``, so most of these fail anyway.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
from typing import Final

DENIED: Final = (
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp",
    "mount", "umount2", "pivot_root", "chroot", "move_mount", "open_tree", "fsopen", "fsmount",
    "fspick", "fsconfig", "mount_setattr", "unshare", "setns",
    "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
    "bpf", "perf_event_open", "userfaultfd", "keyctl", "add_key", "request_key",
    "open_by_handle_at", "name_to_handle_at", "swapon", "swapoff", "reboot", "acct",
    "settimeofday", "clock_settime", "clock_adjtime", "adjtimex", "syslog", "quotactl",
    "ioperm", "iopl", "uselib", "lookup_dcookie", "vhangup",
)  # fmt: skip
"""System calls a job may not make (``EPERM``)."""

_ACT_ALLOW: Final = 0x7FFF0000
_NR_ERROR: Final = -1  # __NR_SCMP_ERROR: the name is unknown on this architecture


def _act_errno(code: int) -> int:
    return 0x00050000 | (code & 0xFFFF)  # SCMP_ACT_ERRNO


def load_libseccomp() -> ctypes.CDLL | None:
    """libseccomp, or None when the host has none."""
    name = ctypes.util.find_library("seccomp")
    if name is None:
        return None
    try:
        lib = ctypes.CDLL(name, use_errno=True)
    except OSError:
        return None
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_syscall_resolve_name.restype = ctypes.c_int
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_rule_add.restype = ctypes.c_int
    lib.seccomp_rule_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint]
    lib.seccomp_export_bpf.restype = ctypes.c_int
    lib.seccomp_export_bpf.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.seccomp_release.restype = None
    lib.seccomp_release.argtypes = [ctypes.c_void_p]
    return lib


def compile_filter(lib: ctypes.CDLL, denied: tuple[str, ...] = DENIED) -> bytes:
    """The BPF program (``struct sock_filter`` array) that denies ``denied``."""
    ctx = lib.seccomp_init(_ACT_ALLOW)
    if not ctx:
        raise OSError(errno.ENOMEM, "seccomp_init failed")
    try:
        for name in (*denied, "clone3"):
            nr = lib.seccomp_syscall_resolve_name(name.encode())
            if nr == _NR_ERROR:
                continue
            action = _act_errno(errno.ENOSYS if name == "clone3" else errno.EPERM)
            rc = lib.seccomp_rule_add(ctx, action, nr, 0)
            if rc < 0:
                raise OSError(-rc, f"seccomp_rule_add({name}) failed")
        fd = os.memfd_create("gpumarket-seccomp-export", 0)
        try:
            rc = lib.seccomp_export_bpf(ctx, fd)
            if rc < 0:
                raise OSError(-rc, "seccomp_export_bpf failed")
            size = os.lseek(fd, 0, os.SEEK_CUR)
            return os.pread(fd, size, 0)
        finally:
            os.close(fd)
    finally:
        lib.seccomp_release(ctx)


def filter_fd(program: bytes) -> int:
    """A readable, inheritable file descriptor positioned at ``program``'s start (what
    ``bwrap --seccomp FD`` reads); the caller closes it once bwrap has started."""
    fd = os.memfd_create("gpumarket-seccomp", 0)
    os.write(fd, program)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


__all__ = ["DENIED", "compile_filter", "filter_fd", "load_libseccomp"]
