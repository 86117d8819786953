#ifndef SWIFTQ_CSWIFTQPLATFORM_H
#define SWIFTQ_CSWIFTQPLATFORM_H

#include <semaphore.h>
#include <stddef.h>
#include <sys/types.h>

/// Linux calls that Swift's Glibc module does not expose (they need _GNU_SOURCE or are macros/variadic).
/// Every function returns 0 (or a count) on success and -1 with errno set on failure, so the Swift
/// side turns errno into one typed error in one place.

/// pipe2(fds, O_CLOEXEC) (pipe2 needs _GNU_SOURCE).
int CSwiftqPlatform_pipeCloseOnExec(int fds[2]);

/// prctl(PR_SET_PDEATHSIG, sig).
int CSwiftqPlatform_setParentDeathSignal(int sig);

/// Reads SO_PEERCRED of a connected unix socket.
int CSwiftqPlatform_peerCredentials(int fd, pid_t *pid, uid_t *uid, gid_t *gid);

/// Reads SO_PEERGROUPS (the peer's supplementary groups at connect time) into `groups`; returns the
/// number of groups (which may exceed `max`: then only `max` were stored), or -1 with errno.
int CSwiftqPlatform_peerGroups(int fd, gid_t *groups, int max);

/// posix_spawn with:
///  - fds[i] dup2'ed onto descriptor firstTarget + i in the child (firstTarget is 0 to set up stdin, stdout
///    and stderr, or 3 to pass extra descriptors), every other descriptor >= firstTarget + nfds closed
///    (never below 3);
///  - PATH searched when `path` has no slash (posix_spawnp);
///  - every signal reset to its default disposition and an empty signal mask (the parent may ignore
///    or block signals that the child must see);
///  - the child in a process group of its own, so a terminal's Ctrl-C reaches only the supervisor.
/// Returns 0 and stores the pid, or -1 with errno.
int CSwiftqPlatform_spawn(const char *path, char *const argv[], char *const envp[], const int *fds, int nfds,
                          int firstTarget, pid_t *pid);

/// Installs a handler for each of `signals` that writes the signal number as one byte to `writeFD`
/// (a non-blocking pipe): the self-pipe trick, so signals are handled on the event loop, not in a
/// handler. errno is preserved inside the handler.
int CSwiftqPlatform_installSignalPipe(int writeFD, const int *signals, int count);

/// Unblocks every signal in the calling thread (a parent may have spawned us with signals blocked).
int CSwiftqPlatform_unblockAllSignals(void);

/// Sets a signal's disposition to SIG_IGN (ignore != 0) or SIG_DFL.
int CSwiftqPlatform_setSignalIgnored(int sig, int ignore);

/// sendmsg() of `len` bytes with `nfds` descriptors attached as SCM_RIGHTS (nfds may be 0).
ssize_t CSwiftqPlatform_sendWithDescriptors(int sock, const void *buf, size_t len, const int *fds, int nfds);

/// recvmsg() into `buf`; received descriptors (close-on-exec) are stored in `fds` (at most `maxfds`),
/// their number in `*nfds`. Descriptors beyond `maxfds` are closed.
ssize_t CSwiftqPlatform_receiveWithDescriptors(int sock, void *buf, size_t len, int *fds, int maxfds, int *nfds);

/// Sends one datagram to a service manager's notification socket (systemd's sd_notify protocol):
/// `socketPath` is `NOTIFY_SOCKET` (a file path, or `@name` for the abstract namespace). Returns the number
/// of bytes sent, or -1 with errno (EINVAL for an unsupported address, such as `vsock:`).
ssize_t CSwiftqPlatform_notifyServiceManager(const char *socketPath, const void *message, size_t length);

/// pthread_setname_np() for the calling thread (a GNU extension Swift's Glibc module does not expose). Returns 0 or
/// an error number (ERANGE for a name longer than 15 bytes).
int CSwiftqPlatform_setThreadName(const char *name);


/// Waits on `sem` until it is posted or `nanoseconds` pass, measured on CLOCK_MONOTONIC (sem_clockwait,
/// glibc 2.30, needs _GNU_SOURCE), and waits on when a signal interrupts. Returns 0 when it was posted, or -1
/// with errno (ETIMEDOUT).
int CSwiftqPlatform_semaphoreWait(sem_t *sem, long long nanoseconds);

#endif
