package events

// Linux errno numbers (include/uapi/asm-generic/errno.h): the codes come from
// the Linux kernel whatever the build platform.
const (
	errENETDOWN     = 100
	errENETUNREACH  = 101
	errECONNABORTED = 103
	errECONNRESET   = 104
	errETIMEDOUT    = 110
	errECONNREFUSED = 111
	errEHOSTDOWN    = 112
	errEHOSTUNREACH = 113
)

// ConnectFailureReason names the socket error of a failed connect (the Code
// of a KindConnectFailure record): refused, timeout, reset, unreachable or
// other (other includes 0: the application closed the socket before the
// connect completed).
func ConnectFailureReason(errno uint32) string {
	switch errno {
	case errECONNREFUSED:
		return "refused"
	case errETIMEDOUT:
		return "timeout"
	case errECONNRESET, errECONNABORTED:
		return "reset"
	case errEHOSTUNREACH, errENETUNREACH, errEHOSTDOWN, errENETDOWN:
		return "unreachable"
	}
	return "other"
}
