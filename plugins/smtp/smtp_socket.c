/*
 * smtp_socket.c — the relay socket libESMTP hides from us, and the two TCP options we set on it.
 *
 * libESMTP writes through a 2 KiB buffer and never sets TCP_NODELAY. With Nagle's algorithm the
 * last small piece of a message (the end of DATA) waits for the ACK of the ones before it, which
 * the relay delays by up to 40 ms: one message per 40 ms per connection. So every TCP socket of
 * this process whose peer is the relay's port gets TCP_NODELAY (harmless for the other sessions'
 * sockets to the same relay).
 *
 * With TCP_NODELAY each 2 KiB write is a packet of its own: a 10 KB message is six packets, six
 * wake-ups of the relay and six trips through both TCP stacks. So while libESMTP copies a message
 * body out, its session's socket is corked (TCP_CORK): the pieces queue in the kernel and leave
 * as one packet when the body ends and the cork is pulled, before libESMTP writes the final dot.
 * Corking needs the session's own descriptor, which libESMTP does not give out either. So a sender
 * thread holds its instance's connect_lock from just before smtp_start_session until libESMTP
 * reports the connection: then the session's socket is the one relay socket no other live
 * session has claimed. Should two be unclaimed (another instance racing to the same port), the
 * session goes uncorked (-1): corking only saves work, it never changes what is sent.
 *
 * A claim is a descriptor and its socket's inode. A finished session's claim is released after
 * libESMTP closed the socket, so for a moment it names a number the kernel may already have given
 * to the next session's socket; by number alone that socket looked claimed and the session took
 * another one, whose later close left it corking a dead or reused descriptor. libESMTP takes the
 * errno of a failed call made from the message callback as a failed transfer and drops the
 * connection mid-DATA ("the session ended before the relay acknowledged the message", seen once
 * in a bench run of 100,000). With the inode a reused number is a new socket; and cork() keeps
 * errno as it found it, since whatever it touches, libESMTP must not see it fail.
 */
#include "smtp.h"

#include <dirent.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

/* The sockets live sessions have claimed, shared by every sender thread. */
struct claim {
	int fd;
	unsigned long ino;
};
static pthread_mutex_t claims_lock = PTHREAD_MUTEX_INITIALIZER;
static struct claim *claims;
static size_t nclaims, claims_cap;

static unsigned long inode_of(int fd)
{
	struct stat st;
	return fstat(fd, &st) == 0 ? (unsigned long)st.st_ino : 0;
}

static int claimed(int fd, unsigned long ino)
{
	for (size_t i = 0; i < nclaims; i++)
		if (claims[i].fd == fd && claims[i].ino == ino)
			return 1;
	return 0;
}

/* 1 when fd is a TCP socket connected to port, with TCP_NODELAY set on it now. */
static int nodelay_if_relay(int fd, int port)
{
	struct sockaddr_storage peer;
	socklen_t len = sizeof peer;
	if (getpeername(fd, (struct sockaddr *)&peer, &len) != 0)
		return 0;
	int p = peer.ss_family == AF_INET    ? ntohs(((struct sockaddr_in *)&peer)->sin_port)
	        : peer.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&peer)->sin6_port)
	                                     : -1;
	int type = 0;
	socklen_t tl = sizeof type;
	if (p != port || getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) != 0 ||
	    type != SOCK_STREAM)
		return 0;
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	return 1;
}

void smtp_socket_connecting(struct smtp_batch *b)
{
	b->fd = -1;
	pthread_mutex_lock(&b->inst->connect_lock);
	b->connecting = 1;
}

void smtp_socket_connected(struct smtp_batch *b)
{
	const char *server = b->inst->set.server;
	const char *colon = strrchr(server, ':');
	int port = colon ? atoi(colon + 1) : 0;
	int found = -1, candidates = 0;
	unsigned long found_ino = 0;
	pthread_mutex_lock(&claims_lock);
	/* Only the descriptors that are open (/proc/self/fd): asking all 4,096 possible ones cost a
	 * system call each on every new session. */
	DIR *dir = port > 0 ? opendir("/proc/self/fd") : NULL;
	if (dir) {
		struct dirent *de;
		while ((de = readdir(dir))) {
			int fd = atoi(de->d_name);
			if (fd < 3 || fd == dirfd(dir) || !nodelay_if_relay(fd, port))
				continue;
			unsigned long ino = inode_of(fd);
			if (!claimed(fd, ino)) {
				found = fd;
				found_ino = ino;
				candidates++;
			}
		}
		closedir(dir);
	} else if (port > 0) {
		long max = sysconf(_SC_OPEN_MAX);
		if (max <= 0 || max > 4096)
			max = 4096;
		for (int fd = 3; fd < max; fd++)
			nodelay_if_relay(fd, port);
	}
	if (candidates == 1) {
		if (nclaims == claims_cap) {
			size_t cap = claims_cap ? claims_cap * 2 : 16;
			struct claim *grown = realloc(claims, cap * sizeof *claims);
			if (!grown)
				found = -1;
			else {
				claims = grown;
				claims_cap = cap;
			}
		}
		if (found >= 0)
			claims[nclaims++] = (struct claim){found, found_ino};
	} else {
		found = -1;
	}
	pthread_mutex_unlock(&claims_lock);
	b->fd = found;
	b->ino = found >= 0 ? found_ino : 0;
	if (b->connecting) {
		b->connecting = 0;
		pthread_mutex_unlock(&b->inst->connect_lock);
	}
}

/* After smtp_destroy_session has closed the socket: released before the close, it would be a
 * second unclaimed socket for a session connecting meanwhile. */
void smtp_socket_done(struct smtp_batch *b)
{
	if (b->connecting) { /* the session never connected */
		b->connecting = 0;
		pthread_mutex_unlock(&b->inst->connect_lock);
	}
	int fd = b->fd;
	b->fd = -1;
	if (fd < 0)
		return;
	pthread_mutex_lock(&claims_lock);
	for (size_t i = 0; i < nclaims; i++)
		if (claims[i].fd == fd && claims[i].ino == b->ino) {
			claims[i] = claims[--nclaims];
			break;
		}
	pthread_mutex_unlock(&claims_lock);
}

void smtp_socket_cork(int fd, int on)
{
	int saved = errno;
	if (fd >= 0)
		setsockopt(fd, IPPROTO_TCP, TCP_CORK, &on, sizeof on);
	errno = saved;
}
