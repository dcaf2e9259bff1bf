// SPDX-License-Identifier: (MIT OR GPL-2.0)
/*
 * TCP connection events, aggregated in the kernel.
 *
 * Five BTF tracepoints count state transitions (opens, closes with their
 * lifetime, failed connects with the socket's error), resets sent (with the
 * kernel's reason where the tracepoint passes one) and received, and
 * retransmitted segments and SYN-ACKs. Nothing is sent to user space per
 * event: every event adds to a counter in a fixed-size hash map keyed by the
 * network namespace's cookie, and user space reads the maps when it samples.
 * A full map never blocks an event: the event is dropped and counted in a
 * per-CPU drop counter.
 *
 * Two maps hold the same value: "totals", small and keyed by (namespace,
 * kind, code), so that per-namespace totals stay exact; and "details", keyed
 * also by the remote address and the ports, which may fill under a scan.
 */
#include "common.h"
#include "kernel.h"

char __license[] SEC("license") = "Dual MIT/GPL";

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6

/* TCP states, include/net/tcp_states.h. */
enum {
	TCP_ESTABLISHED = 1,
	TCP_SYN_SENT,
	TCP_SYN_RECV,
	TCP_FIN_WAIT1,
	TCP_FIN_WAIT2,
	TCP_TIME_WAIT,
	TCP_CLOSE,
	TCP_CLOSE_WAIT,
	TCP_LAST_ACK,
	TCP_LISTEN,
	TCP_CLOSING,
};

/* Event kinds; user space has the same numbers (events/record.go). */
enum {
	KIND_OPEN = 1,          /* code: DIR_*; active: remote addr and port, passive: local port */
	KIND_CLOSE = 2,         /* code: DIR_* of the opening; value carries the lifetime */
	KIND_CONNECT_FAIL = 3,  /* code: sk_err (errno) when SYN_SENT goes to CLOSE */
	KIND_RESET_SENT = 4,    /* code: enum sk_rst_reason, or REASON_UNKNOWN */
	KIND_RESET_RECV = 5,
	KIND_RETRANS = 6,
	KIND_SYNACK_RETRANS = 7,/* local port: the listener's */
};

enum {
	DIR_UNKNOWN = 0, /* opened before the programs were loaded */
	DIR_ACTIVE = 1,
	DIR_PASSIVE = 2,
};

#define REASON_UNKNOWN 0xffffffff

/* Drop counters (per-CPU array indices). */
enum {
	DROP_TOTALS = 0,
	DROP_DETAILS = 1,
	DROP_STORAGE = 2,
	DROP_MAX = 4,
};

#define LIFETIME_BUCKETS 12

struct key {
	__u64 netns;
	__u32 kind;
	__u32 code;
	__u8 addr[16]; /* remote address; IPv4 in the first 4 bytes */
	__u16 lport;   /* host order */
	__u16 rport;   /* host order */
	__u8 family;
	__u8 pad[3];
};

struct value {
	__u64 count;
	__u64 lifetime_sum_ns;
	__u64 lifetime[LIFETIME_BUCKETS];
};

/* events/record.go decodes these layouts: KeySize, ValueSize. */
_Static_assert(sizeof(struct key) == 40, "struct key layout");
_Static_assert(sizeof(struct value) == 112, "struct value layout");

struct start {
	__u64 ts;
	__u32 dir;
	__u16 lport; /* the kernel clears it before the CLOSE event */
	__u16 pad;
};

/* 16384 entries: a namespace takes one per kind and code seen (about 10-20),
 * so that totals stay exact for the 500 namespaces --netns=all samples by
 * default, with room to spare. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct key);
	__type(value, struct value);
} totals SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct key);
	__type(value, struct value);
} details SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, DROP_MAX);
	__type(key, __u32);
	__type(value, __u64);
} drops SEC(".maps");

/* When each connection was established and which way, per socket. */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct start);
} starts SEC(".maps");

/* The only namespace reported, by cookie; 0 reports every namespace. */
volatile const __u64 filter_netns = 0;

/* Upper bounds of the lifetime buckets, in ns; the last bucket is +Inf.
 * Mirrored by LifetimeBuckets in events/record.go. */
static const __u64 bounds[LIFETIME_BUCKETS - 1] = {
	1000000ULL,          /* 1 ms */
	5000000ULL,          /* 5 ms */
	25000000ULL,         /* 25 ms */
	100000000ULL,        /* 100 ms */
	500000000ULL,        /* 500 ms */
	1000000000ULL,       /* 1 s */
	5000000000ULL,       /* 5 s */
	30000000000ULL,      /* 30 s */
	120000000000ULL,     /* 2 min */
	600000000000ULL,     /* 10 min */
	3600000000000ULL,    /* 1 h */
};

static __always_inline void drop(__u32 idx)
{
	__u64 *n = bpf_map_lookup_elem(&drops, &idx);
	/* Atomic: another program may run on this CPU in between (a softirq
	 * over a task, say), per-CPU slot or not. */
	if (n)
		__sync_fetch_and_add(n, 1);
}

static __always_inline void add(void *map, __u32 dropidx, struct key *k, __u64 life, int has_life)
{
	struct value *v = bpf_map_lookup_elem(map, k);
	if (!v) {
		struct value zero = {};
		/* Fails with -E2BIG when the map is full, or -EEXIST when
		 * another CPU inserted the key meanwhile: look again. */
		bpf_map_update_elem(map, k, &zero, BPF_NOEXIST);
		v = bpf_map_lookup_elem(map, k);
		if (!v) {
			drop(dropidx);
			return;
		}
	}
	__sync_fetch_and_add(&v->count, 1);
	if (!has_life)
		return;
	__sync_fetch_and_add(&v->lifetime_sum_ns, life);
	__u32 b = LIFETIME_BUCKETS - 1;
#pragma unroll
	for (int i = LIFETIME_BUCKETS - 2; i >= 0; i--) {
		if (life <= bounds[i])
			b = i;
	}
	if (b < LIFETIME_BUCKETS)
		__sync_fetch_and_add(&v->lifetime[b], 1);
}

/* record adds one event to the namespace's total and to the detail entry. */
static __always_inline void record(struct key *k, __u64 life, int has_life)
{
	struct key t = {};
	t.netns = k->netns;
	t.kind = k->kind;
	t.code = k->code;
	add(&totals, DROP_TOTALS, &t, life, has_life);
	add(&details, DROP_DETAILS, k, life, has_life);
}

static __always_inline __u64 sk_netns(const struct sock_common *skc)
{
	struct net *net = skc->skc_net.net;
	return net ? net->net_cookie : 0;
}

static __always_inline int wanted(__u64 netns)
{
	return filter_netns == 0 || filter_netns == netns;
}

/* fill_remote sets the family and the remote address and ports of a socket
 * (full, request or timewait: all begin with sock_common). */
static __always_inline int fill_from_common(struct key *k, const struct sock_common *skc)
{
	unsigned short family = skc->skc_family;
	if (family == AF_INET) {
		__be32 a = skc->skc_daddr;
		__builtin_memcpy(k->addr, &a, 4);
	} else if (family == AF_INET6) {
		bpf_probe_read_kernel(k->addr, 16, &skc->skc_v6_daddr);
	} else {
		return 0;
	}
	k->family = family;
	k->lport = skc->skc_num;
	k->rport = __builtin_bswap16(skc->skc_dport);
	return 1;
}

static __always_inline void life_bucket_key(struct key *k, __u32 dir)
{
	/* A close is attributed like its open: active ones to the
	 * destination, passive ones to the listener's port, the rest only to
	 * the namespace. */
	k->code = dir;
	if (dir == DIR_ACTIVE) {
		k->lport = 0;
	} else if (dir == DIR_PASSIVE) {
		__builtin_memset(k->addr, 0, sizeof(k->addr));
		k->rport = 0;
	} else {
		__builtin_memset(k->addr, 0, sizeof(k->addr));
		k->rport = 0;
		k->lport = 0;
	}
}

SEC("tp_btf/inet_sock_set_state")
int set_state(unsigned long long *ctx)
{
	struct sock *sk = (struct sock *)ctx[0];
	int oldstate = (int)ctx[1];
	int newstate = (int)ctx[2];

	if (newstate != TCP_ESTABLISHED && newstate != TCP_CLOSE)
		return 0;
	if (!sk || sk->sk_protocol != IPPROTO_TCP)
		return 0;
	__u64 netns = sk_netns(&sk->__sk_common);
	if (!wanted(netns))
		return 0;

	struct key k = {};
	k.netns = netns;
	if (!fill_from_common(&k, &sk->__sk_common))
		return 0;

	if (newstate == TCP_ESTABLISHED) {
		__u32 dir;
		if (oldstate == TCP_SYN_SENT)
			dir = DIR_ACTIVE;
		else if (oldstate == TCP_SYN_RECV)
			dir = DIR_PASSIVE;
		else
			return 0;
		struct start *st = bpf_sk_storage_get(&starts, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
		if (st) {
			st->ts = bpf_ktime_get_ns();
			st->dir = dir;
			st->lport = k.lport;
		} else {
			drop(DROP_STORAGE);
		}
		k.kind = KIND_OPEN;
		life_bucket_key(&k, dir);
		record(&k, 0, 0);
		return 0;
	}

	switch (oldstate) {
	case TCP_SYN_SENT: {
		int err = sk->sk_err;
		k.kind = KIND_CONNECT_FAIL;
		k.code = err < 0 ? -err : err;
		k.lport = 0;
		record(&k, 0, 0);
		return 0;
	}
	case TCP_ESTABLISHED:
	case TCP_FIN_WAIT1:
	case TCP_FIN_WAIT2:
	case TCP_CLOSE_WAIT:
	case TCP_LAST_ACK:
	case TCP_CLOSING:
		break;
	default:
		return 0;
	}

	__u32 dir = DIR_UNKNOWN;
	__u64 life = 0;
	int has_life = 0;
	struct start *st = bpf_sk_storage_get(&starts, sk, 0, 0);
	if (st && st->ts) {
		__u64 now = bpf_ktime_get_ns();
		dir = st->dir;
		k.lport = st->lport;
		life = now > st->ts ? now - st->ts : 0;
		has_life = 1;
		st->ts = 0;
	}
	k.kind = KIND_CLOSE;
	life_bucket_key(&k, dir);
	record(&k, life, has_life);
	return 0;
}

/* fill_from_skb reads the namespace, family, remote address and ports of an
 * incoming segment, for resets sent where no socket matched. */
static __always_inline int fill_from_skb(struct key *k, const struct sk_buff *skb)
{
	struct net_device *dev = skb->dev;
	if (!dev)
		return 0;
	struct net *net = dev->nd_net.net;
	if (!net)
		return 0;
	k->netns = net->net_cookie;

	unsigned char *head = skb->head;
	__u16 nh = skb->network_header;
	__u16 th = skb->transport_header;
	__u8 ver = 0;
	if (bpf_probe_read_kernel(&ver, 1, head + nh))
		return 0;
	ver >>= 4;
	if (ver == 4) {
		/* iphdr: saddr at 12 */
		if (bpf_probe_read_kernel(k->addr, 4, head + nh + 12))
			return 0;
		k->family = AF_INET;
	} else if (ver == 6) {
		/* ipv6hdr: saddr at 8 */
		if (bpf_probe_read_kernel(k->addr, 16, head + nh + 8))
			return 0;
		k->family = AF_INET6;
	} else {
		return 0;
	}
	__be16 ports[2];
	if (bpf_probe_read_kernel(ports, sizeof(ports), head + th))
		return 0;
	k->rport = __builtin_bswap16(ports[0]);
	k->lport = __builtin_bswap16(ports[1]);
	/* A SYN to a port without a listener names a service port; any other
	 * segment without a socket (a FIN or ACK arriving after the
	 * connection closed, say) was sent to a port that is as likely
	 * ephemeral, which would give every such reset a key of its own:
	 * keep no local port for those. tcphdr: flags at 13, SYN 0x02. */
	__u8 flags = 0;
	if (bpf_probe_read_kernel(&flags, 1, head + th + 13) || !(flags & 0x02))
		k->lport = 0;
	return 1;
}

static __always_inline int reset_sent(const struct sock *sk, const struct sk_buff *skb, __u32 reason)
{
	struct key k = {};
	if (sk) {
		k.netns = sk_netns(&sk->__sk_common);
		if (!fill_from_common(&k, &sk->__sk_common))
			return 0;
		/* The record of the opening (full sockets only; NULL for
		 * the others) says which way the connection went. */
		struct start *st = bpf_sk_storage_get(&starts, (void *)sk, 0, 0);
		if (st && st->dir == DIR_ACTIVE) {
			/* The local port of a connect is ephemeral. */
			k.lport = 0;
		} else if (k.lport == 0 && st) {
			/* Closing sockets (SO_LINGER 0, abort on close)
			 * have released their port before they send the
			 * reset: take it from the record of the opening. */
			k.lport = st->lport;
		}
	} else if (skb) {
		if (!fill_from_skb(&k, skb))
			return 0;
	} else {
		return 0;
	}
	if (!wanted(k.netns))
		return 0;
	k.kind = KIND_RESET_SENT;
	k.code = reason;
	k.rport = 0; /* the peer's port is mostly ephemeral: one key per peer and local service port */
	record(&k, 0, 0);
	return 0;
}

/* Linux 6.10 and later: tcp_send_reset(sk, skb, reason). */
SEC("tp_btf/tcp_send_reset")
int send_reset(unsigned long long *ctx)
{
	return reset_sent((const struct sock *)ctx[0], (const struct sk_buff *)ctx[1], (__u32)ctx[2]);
}

/* Older kernels: tcp_send_reset(sk, skb), no reason. */
SEC("tp_btf/tcp_send_reset")
int send_reset_noreason(unsigned long long *ctx)
{
	return reset_sent((const struct sock *)ctx[0], (const struct sk_buff *)ctx[1], REASON_UNKNOWN);
}

static __always_inline int count_sk(const struct sock *sk, __u32 kind)
{
	if (!sk)
		return 0;
	struct key k = {};
	k.netns = sk_netns(&sk->__sk_common);
	if (!wanted(k.netns))
		return 0;
	if (!fill_from_common(&k, &sk->__sk_common))
		return 0;
	/* Keep the ports that name a service, not the ephemeral ones, so that
	 * keys stay few: the remote port of an active connection (one still
	 * connecting included: a refused connect's reset, a SYN sent again),
	 * the local port of a passive one (a listener's); the local port alone
	 * when the opening was not seen. */
	struct start *st = bpf_sk_storage_get(&starts, (void *)sk, 0, 0);
	if ((st && st->dir == DIR_ACTIVE) || (!st && sk->__sk_common.skc_state == TCP_SYN_SENT))
		k.lport = 0;
	else
		k.rport = 0;
	k.kind = kind;
	record(&k, 0, 0);
	return 0;
}

SEC("tp_btf/tcp_receive_reset")
int receive_reset(unsigned long long *ctx)
{
	return count_sk((const struct sock *)ctx[0], KIND_RESET_RECV);
}

SEC("tp_btf/tcp_retransmit_skb")
int retransmit_skb(unsigned long long *ctx)
{
	return count_sk((const struct sock *)ctx[0], KIND_RETRANS);
}

SEC("tp_btf/tcp_retransmit_synack")
int retransmit_synack(unsigned long long *ctx)
{
	const struct sock *sk = (const struct sock *)ctx[0];
	const struct request_sock *req = (const struct request_sock *)ctx[1];
	if (!sk || !req)
		return 0;
	struct key k = {};
	k.netns = sk_netns(&sk->__sk_common);
	if (!wanted(k.netns))
		return 0;
	if (!fill_from_common(&k, &req->__req_common))
		return 0;
	k.kind = KIND_SYNACK_RETRANS;
	k.rport = 0; /* the client's ephemeral port */
	record(&k, 0, 0);
	return 0;
}
