#define _GNU_SOURCE
#include "CSwiftqPlatform.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <time.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int CSwiftqPlatform_pipeCloseOnExec(int fds[2]) { return pipe2(fds, O_CLOEXEC); }

int CSwiftqPlatform_setParentDeathSignal(int sig) { return prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0); }

int CSwiftqPlatform_peerCredentials(int fd, pid_t *pid, uid_t *uid, gid_t *gid) {
    struct ucred cred;
    socklen_t len = sizeof(cred);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return -1;
    *pid = cred.pid;
    *uid = cred.uid;
    *gid = cred.gid;
    return 0;
}

int CSwiftqPlatform_peerGroups(int fd, gid_t *groups, int max) {
    socklen_t len = (socklen_t)(sizeof(gid_t) * (size_t)max);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) != 0) {
        if (errno != ERANGE) return -1;
    }
    return (int)(len / sizeof(gid_t));
}

int CSwiftqPlatform_spawn(const char *path, char *const argv[], char *const envp[], const int *fds, int nfds,
                          int firstTarget, pid_t *pid) {
    enum { maxDescriptors = 64 };
    if (nfds < 0 || nfds > maxDescriptors || firstTarget < 0) {
        errno = EINVAL;
        return -1;
    }
    // Move every source above the highest target first, so no dup2 overwrites a source still needed.
    int temporary[maxDescriptors];
    int made = 0;
    int result = -1;
    for (; made < nfds; made++) {
        temporary[made] = fcntl(fds[made], F_DUPFD_CLOEXEC, firstTarget + nfds > 3 ? firstTarget + nfds : 3);
        if (temporary[made] < 0) goto out;
    }
    posix_spawn_file_actions_t actions;
    posix_spawnattr_t attributes;
    int rc = posix_spawn_file_actions_init(&actions);
    if (rc != 0) {
        errno = rc;
        goto out;
    }
    rc = posix_spawnattr_init(&attributes);
    if (rc != 0) {
        posix_spawn_file_actions_destroy(&actions);
        errno = rc;
        goto out;
    }
    for (int i = 0; i < nfds && rc == 0; i++)
        rc = posix_spawn_file_actions_adddup2(&actions, temporary[i], firstTarget + i);
    int closeFrom = firstTarget + nfds > 3 ? firstTarget + nfds : 3;
    if (rc == 0) rc = posix_spawn_file_actions_addclosefrom_np(&actions, closeFrom);
    sigset_t defaults, empty;
    sigfillset(&defaults);
    sigdelset(&defaults, SIGKILL);
    sigdelset(&defaults, SIGSTOP);
    sigemptyset(&empty);
    if (rc == 0) rc = posix_spawnattr_setsigdefault(&attributes, &defaults);
    if (rc == 0) rc = posix_spawnattr_setsigmask(&attributes, &empty);
    if (rc == 0) rc = posix_spawnattr_setpgroup(&attributes, 0);
    if (rc == 0)
        rc = posix_spawnattr_setflags(&attributes,
                                      POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETPGROUP);
    if (rc == 0) {
        if (strchr(path, '/') != NULL) {
            rc = posix_spawn(pid, path, &actions, &attributes, argv, envp);
        } else {
            rc = posix_spawnp(pid, path, &actions, &attributes, argv, envp);
        }
    }
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attributes);
    if (rc != 0) {
        errno = rc;
        goto out;
    }
    result = 0;
out:;
    int saved = errno;
    for (int i = 0; i < made; i++) close(temporary[i]);
    errno = saved;
    return result;
}

static int signalPipeWriteFD = -1;

static void signalPipeHandler(int sig) {
    int saved = errno;
    unsigned char byte = (unsigned char)sig;
    ssize_t ignored = write(signalPipeWriteFD, &byte, 1);
    (void)ignored;
    errno = saved;
}

int CSwiftqPlatform_installSignalPipe(int writeFD, const int *signals, int count) {
    signalPipeWriteFD = writeFD;
    struct sigaction action;
    memset(&action, 0, sizeof(action));
    action.sa_handler = signalPipeHandler;
    action.sa_flags = SA_RESTART;
    sigfillset(&action.sa_mask);
    for (int i = 0; i < count; i++) {
        if (sigaction(signals[i], &action, NULL) != 0) return -1;
    }
    return 0;
}

int CSwiftqPlatform_unblockAllSignals(void) {
    sigset_t empty;
    sigemptyset(&empty);
    return pthread_sigmask(SIG_SETMASK, &empty, NULL);
}

int CSwiftqPlatform_setSignalIgnored(int sig, int ignore) {
    struct sigaction action;
    memset(&action, 0, sizeof(action));
    action.sa_handler = ignore ? SIG_IGN : SIG_DFL;
    sigemptyset(&action.sa_mask);
    return sigaction(sig, &action, NULL);
}

ssize_t CSwiftqPlatform_sendWithDescriptors(int sock, const void *buf, size_t len, const int *fds, int nfds) {
    struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
    struct msghdr msg;
    memset(&msg, 0, sizeof(msg));
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    union {
        char buffer[CMSG_SPACE(sizeof(int) * 16)];
        struct cmsghdr align;
    } control;
    if (nfds > 0) {
        if (nfds > 16) {
            errno = EINVAL;
            return -1;
        }
        memset(&control, 0, sizeof(control));
        msg.msg_control = control.buffer;
        msg.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
        struct cmsghdr *header = CMSG_FIRSTHDR(&msg);
        header->cmsg_level = SOL_SOCKET;
        header->cmsg_type = SCM_RIGHTS;
        header->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
        memcpy(CMSG_DATA(header), fds, sizeof(int) * nfds);
    }
    return sendmsg(sock, &msg, MSG_NOSIGNAL);
}

ssize_t CSwiftqPlatform_receiveWithDescriptors(int sock, void *buf, size_t len, int *fds, int maxfds, int *nfds) {
    struct iovec iov = {.iov_base = buf, .iov_len = len};
    struct msghdr msg;
    memset(&msg, 0, sizeof(msg));
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    union {
        char buffer[CMSG_SPACE(sizeof(int) * 16)];
        struct cmsghdr align;
    } control;
    msg.msg_control = control.buffer;
    msg.msg_controllen = sizeof(control.buffer);
    *nfds = 0;
    ssize_t n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
    if (n < 0) return n;
    for (struct cmsghdr *header = CMSG_FIRSTHDR(&msg); header != NULL; header = CMSG_NXTHDR(&msg, header)) {
        if (header->cmsg_level != SOL_SOCKET || header->cmsg_type != SCM_RIGHTS) continue;
        int count = (int)((header->cmsg_len - CMSG_LEN(0)) / sizeof(int));
        int *received = (int *)CMSG_DATA(header);
        for (int i = 0; i < count; i++) {
            if (*nfds < maxfds) {
                fds[(*nfds)++] = received[i];
            } else {
                close(received[i]);
            }
        }
    }
    return n;
}

ssize_t CSwiftqPlatform_notifyServiceManager(const char *socketPath, const void *message, size_t length) {
    struct sockaddr_un address;
    memset(&address, 0, sizeof(address));
    address.sun_family = AF_UNIX;
    size_t pathLength = strlen(socketPath);
    if ((socketPath[0] != '/' && socketPath[0] != '@') || pathLength < 2 || pathLength >= sizeof(address.sun_path)) {
        errno = EINVAL;
        return -1;
    }
    memcpy(address.sun_path, socketPath, pathLength);
    socklen_t addressLength = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + pathLength);
    if (socketPath[0] == '@') {
        address.sun_path[0] = '\0';  // Abstract namespace: no terminating NUL counted.
    } else {
        addressLength += 1;
    }
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    ssize_t sent;
    do {
        sent = sendto(fd, message, length, MSG_NOSIGNAL, (struct sockaddr *)&address, addressLength);
    } while (sent < 0 && errno == EINTR);
    int saved = errno;
    close(fd);
    errno = saved;
    return sent;
}

int CSwiftqPlatform_setThreadName(const char *name) { return pthread_setname_np(pthread_self(), name); }

int CSwiftqPlatform_semaphoreWait(sem_t *sem, long long nanoseconds) {
    struct timespec deadline;
    if (clock_gettime(CLOCK_MONOTONIC, &deadline) != 0) return -1;
    if (nanoseconds < 0) nanoseconds = 0;
    long long carry = (long long)deadline.tv_nsec + nanoseconds % 1000000000LL;
    deadline.tv_sec += (time_t)(nanoseconds / 1000000000LL + carry / 1000000000LL);
    deadline.tv_nsec = (long)(carry % 1000000000LL);
    int result;
    while ((result = sem_clockwait(sem, CLOCK_MONOTONIC, &deadline)) != 0 && errno == EINTR) {
    }
    return result;
}
