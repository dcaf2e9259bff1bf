//go:build linux

package main

import (
	"fmt"
	"runtime"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcpstate/tcpstate-exporter/diag"
	"github.com/tcpstate/tcpstate-exporter/diag/procnet"
)

func tcpu() time.Duration {
	var ru unix.Rusage
	unix.Getrusage(unix.RUSAGE_THREAD, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func main() {
	runtime.LockOSThread()
	c, err := diag.Dial(nil)
	if err != nil {
		panic(err)
	}
	r := procnet.NewReader("")
	const n = 2000
	var k procnet.Counters
	var ss procnet.Sockstat
	var sy procnet.Sysctls
	t0 := tcpu()
	for i := 0; i < n; i++ {
		r.ReadNetstat(&k)
		r.ReadSNMP(&k)
	}
	t1 := tcpu()
	for i := 0; i < n; i++ {
		r.ReadSockstat(&ss)
	}
	t2 := tcpu()
	for i := 0; i < n; i++ {
		for s := procnet.Sysctl(0); s.Name() != "unknown"; s++ {
			r.ReadSysctl(s, &sy)
		}
	}
	t3 := tcpu()
	for i := 0; i < n; i++ {
		_, err := c.Dump(diag.Request{States: diag.StateMask(1 << diag.Listen)}, func(*diag.Socket) error { return nil })
		if err != nil {
			panic(err)
		}
	}
	t4 := tcpu()
	fmt.Printf("netstat+snmp %v sockstat %v sysctls %v listen-dump %v per op\n", (t1-t0)/n, (t2-t1)/n, (t3-t2)/n, (t4-t3)/n)
}
