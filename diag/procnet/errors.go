package procnet

import (
	"errors"
	"fmt"
)

// Sentinel errors wrapped by *ParseError. Test for them with errors.Is.
var (
	// ErrSyntax reports a line that does not have the expected shape, such as
	// a line without a "Section:" prefix or an empty list item.
	ErrSyntax = errors.New("syntax error")
	// ErrFieldCount reports a header line and a value line with different
	// numbers of columns, or a key without a value.
	ErrFieldCount = errors.New("header and value counts differ")
	// ErrSectionMismatch reports a value line whose section prefix is not the
	// one of the header line before it.
	ErrSectionMismatch = errors.New("value line section differs from header")
	// ErrTruncated reports input that ends in the middle of a record, such as
	// a header line without its value line.
	ErrTruncated = errors.New("truncated input")
	// ErrValue reports a value that is not a number or is out of range.
	ErrValue = errors.New("invalid value")
)

// ParseError describes why an input could not be parsed.
type ParseError struct {
	// File is the path the input was read from, when known.
	File string
	// Line is the 1-based line number where the problem was found, or 0 when
	// the input is a single value.
	Line int
	// Detail says what was wrong, in a few words.
	Detail string
	// Err is one of the Err* sentinels of this package.
	Err error
}

// Error implements error.
func (e *ParseError) Error() string {
	where := "procnet: parse"
	if e.File != "" {
		where += " " + e.File
	}
	if e.Line > 0 {
		where += fmt.Sprintf(" line %d", e.Line)
	}
	if e.Detail != "" {
		return where + ": " + e.Err.Error() + ": " + e.Detail
	}
	return where + ": " + e.Err.Error()
}

// Unwrap returns the sentinel error.
func (e *ParseError) Unwrap() error { return e.Err }

func parseErr(line int, sentinel error, format string, args ...any) error {
	return &ParseError{Line: line, Err: sentinel, Detail: fmt.Sprintf(format, args...)}
}

// withFile records the file name in a *ParseError and leaves other errors as
// they are.
func withFile(err error, file string) error {
	var pe *ParseError
	if errors.As(err, &pe) && pe.File == "" {
		pe.File = file
	}
	return err
}
