/*
 * maildir.c - Maildir delivery (see maildir.h).
 *
 * File names follow the Maildir convention "time.unique.host", with the size
 * appended as Dovecot and Courier expect (",S=size"), so a mailbox server can
 * count quota without opening the file:
 *
 *     1795942550.Q0NDUQ6J8AMH2000R0.mail.example.org,S=1234
 *
 * "Q<id>R<index>" is unique: one queue id per message, one index per
 * recipient within it.
 */
#include "maildir.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* host_for_name - the host name with '/' and ':' escaped, as Maildir asks */
static void host_for_name(const char *host, char *out, size_t outsize)
{
    size_t o = 0;
    for (size_t i = 0; host[i] != '\0' && o + 5 < outsize; i++) {
        if (host[i] == '/') {
            memcpy(out + o, "\\057", 4);
            o += 4;
        } else if (host[i] == ':') {
            memcpy(out + o, "\\072", 4);
            o += 4;
        } else {
            out[o++] = host[i];
        }
    }
    out[o] = '\0';
}

/* maildir_file_name - the file name for recipient rcpt of env */
void maildir_file_name(const struct envelope *env, size_t rcpt, const char *hostname, char *out,
                       size_t outsize)
{
    char host[256];
    host_for_name(hostname, host, sizeof(host));
    snprintf(out, outsize, "%lld.Q%sR%zu.%s,S=%llu", (long long)env->arrival, env->id, rcpt, host,
             (unsigned long long)env->size);
}

/* sync_dir - fsync a directory by path */
static int sync_dir(const char *path);

/*
 * make_dir - mkdir that accepts an existing directory.  A directory made
 * now has its name fsynced into its parent, so a mailbox created for a
 * delivery survives a power cut along with the message in it.
 */
static int make_dir(char *path)
{
    if (mkdir(path, 0700) < 0)
        return errno == EEXIST ? 0 : -1;
    char *slash = strrchr(path, '/');
    if (slash == NULL)
        return sync_dir(".");
    if (slash == path)
        return sync_dir("/");
    *slash = '\0';
    int r = sync_dir(path);
    *slash = '/';
    return r;
}

/* sync_dir - fsync a directory by path */
static int sync_dir(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int r = fsync(fd);
    close(fd);
    return r;
}

/* make_maildir - create the Maildir and any missing parents */
static int make_maildir(const char *maildir)
{
    char path[4096];
    size_t n = strlen(maildir);
    if (n + 5 >= sizeof(path))
        return -1;
    memcpy(path, maildir, n + 1);
    /* Parents first, like mkdir -p. */
    for (size_t i = 1; i < n; i++) {
        if (path[i] == '/') {
            path[i] = '\0';
            if (make_dir(path) < 0)
                return -1;
            path[i] = '/';
        }
    }
    if (make_dir(path) < 0)
        return -1;
    static const char *const subdirs[] = {"/tmp", "/new", "/cur"};
    for (size_t i = 0; i < 3; i++) {
        memcpy(path + n, subdirs[i], 5);
        if (make_dir(path) < 0)
            return -1;
    }
    return 0;
}

/* copy_content - size octets from in to out; -1 with errno on failure */
static int copy_content(int in, int out, uint64_t size)
{
    uint64_t left = size;
    while (left > 0) {
        ssize_t n = copy_file_range(in, NULL, out, NULL, left, 0);
        if (n < 0 && (errno == EXDEV || errno == ENOSYS || errno == EINVAL)) {
            /* Older kernels or odd filesystems: plain read and write. */
            char buf[65536];
            n = read(in, buf, left < sizeof(buf) ? (size_t)left : sizeof(buf));
            if (n > 0 && write(out, buf, (size_t)n) != n)
                n = -1;
        }
        if (n < 0)
            return -1;
        if (n == 0) {
            errno = EIO; /* the content file is shorter than its envelope says */
            return -1;
        }
        left -= (uint64_t)n;
    }
    return 0;
}

/* copy_into - across filesystems: copy through tmp/, fsync, then link into new/ */
static int copy_into(const struct envelope *env, int msg_dirfd, const char *tmp_path,
                     const char *new_path, const char *new_dir)
{
    int in = openat(msg_dirfd, env->id, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return -1;
    int out = open(tmp_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (out < 0 && errno == EEXIST) {
        unlink(tmp_path); /* left over by a crash in the middle of a copy */
        out = open(tmp_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    }
    if (out < 0) {
        int saved = errno;
        close(in);
        errno = saved;
        return -1;
    }
    int r = copy_content(in, out, env->size);
    if (r == 0)
        r = fsync(out);
    int saved = errno;
    close(in);
    close(out);
    if (r == 0 && link(tmp_path, new_path) < 0 && errno != EEXIST) {
        r = -1;
        saved = errno;
    }
    unlink(tmp_path);
    if (r == 0 && sync_dir(new_dir) < 0) {
        r = -1;
        saved = errno;
    }
    errno = saved;
    return r;
}

/* maildir_deliver - deliver one recipient (see maildir.h) */
enum deliver_outcome maildir_deliver(const struct envelope *env, size_t rcpt, int msg_dirfd,
                                     const char *hostname, bool may_copy, char *why, size_t whysize)
{
    const char *maildir = env->rcpt[rcpt].maildir;
    char name[512], new_path[4096], tmp_path[4096], new_dir[4096];

    maildir_file_name(env, rcpt, hostname, name, sizeof(name));
    if ((size_t)snprintf(new_path, sizeof(new_path), "%s/new/%s", maildir, name) >=
            sizeof(new_path) ||
        (size_t)snprintf(tmp_path, sizeof(tmp_path), "%s/tmp/%s", maildir, name) >=
            sizeof(tmp_path)) {
        snprintf(why, whysize, "Maildir path too long");
        return DELIVER_FAIL;
    }
    snprintf(new_dir, sizeof(new_dir), "%s/new", maildir);

    for (int attempt = 0; attempt < 2; attempt++) {
        if (linkat(msg_dirfd, env->id, AT_FDCWD, new_path, 0) == 0)
            return DELIVER_OK;
        if (errno == EEXIST)
            return DELIVER_OK; /* delivered before a crash: the name is ours */
        if (errno == ENOENT && attempt == 0) {
            if (make_maildir(maildir) < 0)
                break;
            continue;
        }
        if (errno == EXDEV || errno == EPERM || errno == EMLINK) {
            /* Another filesystem, or one without hard links: copy (slow,
             * and fsynced: for the delivery workers, not the queue thread). */
            if (!may_copy)
                return DELIVER_NOT_TRIED;
            if (copy_into(env, msg_dirfd, tmp_path, new_path, new_dir) == 0)
                return DELIVER_OK;
        }
        break;
    }
    snprintf(why, whysize, "cannot deliver to Maildir %s: %s", maildir, strerror(errno));
    return DELIVER_DEFER;
}
