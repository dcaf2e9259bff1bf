// SPDX-License-Identifier: (MIT OR GPL-2.0)
/*
 * The kernel structures the programs read, reduced to the members they use.
 * preserve_access_index makes every access a CO-RE relocation: the loader
 * finds each member by name in the running kernel's BTF (anonymous unions
 * included), so the offsets here do not matter and no vmlinux.h is needed.
 */
#ifndef TCPSTATE_KERNEL_H
#define TCPSTATE_KERNEL_H

#include "common.h"

#define PAI __attribute__((preserve_access_index))

struct net {
	__u64 net_cookie;
} PAI;

typedef struct {
	struct net *net;
} PAI possible_net_t;

struct in6_addr {
	union {
		__u8 u6_addr8[16];
	} in6_u;
} PAI;

struct sock_common {
	__be32 skc_daddr;
	__be32 skc_rcv_saddr;
	__be16 skc_dport;
	__u16 skc_num;
	unsigned short skc_family;
	volatile unsigned char skc_state;
	possible_net_t skc_net;
	struct in6_addr skc_v6_daddr;
	struct in6_addr skc_v6_rcv_saddr;
} PAI;

struct sock {
	struct sock_common __sk_common;
	__u16 sk_protocol;
	int sk_err;
} PAI;

struct request_sock {
	struct sock_common __req_common;
} PAI;

struct net_device {
	possible_net_t nd_net;
} PAI;

struct sk_buff {
	struct net_device *dev;
	unsigned char *head;
	__u16 transport_header;
	__u16 network_header;
} PAI;

#endif
