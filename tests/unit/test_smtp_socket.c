/*
 * test_smtp_socket.c — how the SMTP plugin finds the socket libESMTP hides (plugins/smtp/
 * smtp_socket.c, compiled in here): a session that connects under its instance's connect lock
 * gets its own socket, never another live session's; two unclaimed sockets to the relay are
 * refused (-1, uncorked) rather than guessed at; a finished session's claim goes, and a claim
 * left on a number the kernel gave to a new socket does not hide it; every relay socket gets
 * TCP_NODELAY; cork() sets and clears TCP_CORK and never changes errno.
 */
#include "../../plugins/smtp/smtp_socket.c"

#include "testlib.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>

static int listener(int *port)
{
	int l = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	ASSERT_EQ_INT(bind(l, (struct sockaddr *)&a, sizeof a), 0);
	ASSERT_EQ_INT(listen(l, 16), 0);
	socklen_t len = sizeof a;
	ASSERT_EQ_INT(getsockname(l, (struct sockaddr *)&a, &len), 0);
	*port = ntohs(a.sin_port);
	return l;
}

static int dial(int port)
{
	int s = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET,
	                        .sin_port = htons((uint16_t)port),
	                        .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	ASSERT_EQ_INT(connect(s, (struct sockaddr *)&a, sizeof a), 0);
	return s;
}

static int opt(int fd, int name)
{
	int v = -1;
	socklen_t len = sizeof v;
	ASSERT_EQ_INT(getsockopt(fd, IPPROTO_TCP, name, &v, &len), 0);
	return v;
}

/* An instance whose relay is 127.0.0.1:port. */
static void inst_init(struct smtp_inst *inst, int port)
{
	memset(inst, 0, sizeof *inst);
	snprintf(inst->set.server, sizeof inst->set.server, "127.0.0.1:%d", port);
	pthread_mutex_init(&inst->connect_lock, NULL);
}

/* b connects while no other new socket to the relay appears: it must find its own. */
static int connect_alone(struct smtp_batch *b, int port)
{
	smtp_socket_connecting(b);
	int s = dial(port);
	smtp_socket_connected(b);
	ASSERT_EQ_INT(b->fd, s);
	return s;
}

static void test_each_session_finds_its_own_socket(void)
{
	int port;
	int l = listener(&port);
	struct smtp_inst inst;
	inst_init(&inst, port);
	struct smtp_batch a = {.inst = &inst}, b = {.inst = &inst}, c = {.inst = &inst};
	int sa = connect_alone(&a, port);
	ASSERT_EQ_INT(opt(sa, TCP_NODELAY), 1);

	int sb = connect_alone(&b, port); /* a's socket is claimed, so b's is the only new one */

	/* Two new sockets at once: no guess. */
	smtp_socket_connecting(&c);
	int s1 = dial(port), s2 = dial(port);
	smtp_socket_connected(&c);
	ASSERT_EQ_INT(c.fd, -1);
	smtp_socket_cork(c.fd, 1); /* a no-op for -1 */
	close(s1);
	close(s2);
	smtp_socket_done(&c);

	smtp_socket_cork(a.fd, 1);
	ASSERT(opt(sa, TCP_CORK) != 0);
	smtp_socket_cork(a.fd, 0);
	ASSERT_EQ_INT(opt(sa, TCP_CORK), 0);

	/* a finishes (socket closed, then released); the next session finds its own again. */
	close(sa);
	smtp_socket_done(&a);
	ASSERT_EQ_INT(a.fd, -1);
	struct smtp_batch d = {.inst = &inst};
	int sd = connect_alone(&d, port);

	/* A session that never connected releases the lock in done(). */
	struct smtp_batch e = {.inst = &inst};
	smtp_socket_connecting(&e);
	smtp_socket_done(&e);
	ASSERT_EQ_INT(pthread_mutex_trylock(&inst.connect_lock), 0);
	pthread_mutex_unlock(&inst.connect_lock);

	close(sb);
	smtp_socket_done(&b);
	close(sd);
	smtp_socket_done(&d);
	ASSERT_EQ_INT((int)nclaims, 0);
	close(l);
	pthread_mutex_destroy(&inst.connect_lock);
}

/*
 * A finished session's claim goes only after libESMTP closed its socket, so the next session's
 * socket can carry the same number while the stale claim is still there. It must still be found
 * as that session's own (by its inode), never mistaken for claimed while another unclaimed relay
 * socket is taken instead; and cork() on a dead descriptor leaves errno alone, because libESMTP
 * reads any errno left by its message callback as a failed transfer.
 */
static void test_reused_number_is_a_new_socket(void)
{
	int port;
	int l = listener(&port);
	struct smtp_inst inst;
	inst_init(&inst, port);
	struct smtp_batch a = {.inst = &inst}, b = {.inst = &inst}, c = {.inst = &inst};
	int sa = connect_alone(&a, port);
	/* An unclaimed relay socket: a session that could not tell its own (fd -1). */
	smtp_socket_connecting(&c);
	int s1 = dial(port), s2 = dial(port);
	smtp_socket_connected(&c);
	ASSERT_EQ_INT(c.fd, -1);
	close(s2);

	/* a's socket closes; b connects before a's claim is released and gets the same number. */
	close(sa);
	smtp_socket_connecting(&b);
	int sb = dial(port);
	ASSERT_EQ_INT(sb, sa);
	smtp_socket_connected(&b);
	/* Its own socket and s1 are both unclaimed: no guess, and above all not s1. */
	ASSERT(b.fd != s1);
	ASSERT_EQ_INT(b.fd, -1);
	smtp_socket_done(&a); /* releases a's claim only, not a claim on the reused number */
	close(s1);
	smtp_socket_done(&c);

	/* Now alone with a stale-looking number: found as its own. */
	struct smtp_batch d = {.inst = &inst};
	close(sb);
	smtp_socket_done(&b);
	int sx = connect_alone(&a, port); /* claims sx */
	close(sx); /* a ends: the claim on (sx, its inode) stays until done() */
	smtp_socket_connecting(&d);
	int sd = dial(port);
	ASSERT_EQ_INT(sd, sx);
	smtp_socket_connected(&d);
	ASSERT_EQ_INT(d.fd, sd);
	smtp_socket_done(&a);
	ASSERT_EQ_INT((int)nclaims, 1); /* d's claim survives a's release of the same number */

	/* cork() on a closed descriptor: the failure stays invisible. */
	close(sd);
	errno = 0;
	smtp_socket_cork(sd, 0);
	ASSERT_EQ_INT(errno, 0);
	smtp_socket_done(&d);
	ASSERT_EQ_INT((int)nclaims, 0);
	close(l);
	pthread_mutex_destroy(&inst.connect_lock);
}

NG_TESTS(NG_TEST(test_each_session_finds_its_own_socket),
         NG_TEST(test_reused_number_is_a_new_socket), )
