package telemetry

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"
)

// Access-log formats accepted by NewAccessLog.
const (
	// FormatText is Istio's default EnvoyTextLogFormat.
	FormatText = "text"
	// FormatJSON is Istio's EnvoyJSONLogFormatIstio: the same fields under
	// snake_case keys, one object per line.
	FormatJSON = "json"
)

// envoyTimeLayout is Envoy's default START_TIME rendering,
// %Y-%m-%dT%H:%M:%E3SZ, always in UTC.
const envoyTimeLayout = "2006-01-02T15:04:05.000Z"

// AccessLog writes one line per finished request, in the format Istio
// configures Envoy with, so that tools that parse Istio access logs read
// michi's unchanged. It is safe for concurrent use. A nil *AccessLog
// discards every record, so callers need not check whether logging is on.
type AccessLog struct {
	mu     sync.Mutex // serialises writes so lines never interleave
	w      io.Writer
	encode func(buf []byte, r *Record) []byte
}

// NewAccessLog returns an access log writing to w in format, "text" or
// "json".
func NewAccessLog(w io.Writer, format string) (*AccessLog, error) {
	l := &AccessLog{w: w}
	switch format {
	case FormatText, "":
		l.encode = appendText
	case FormatJSON:
		l.encode = appendJSON
	default:
		return nil, fmt.Errorf("unknown access log format %q: want %s or %s", format, FormatText, FormatJSON)
	}
	return l, nil
}

// OpenAccessLog interprets the --access-log flag: "off" (or "") disables
// the log and returns a nil *AccessLog, "stdout" and "stderr" name those
// streams, and anything else is a file opened for appending (created if
// missing). The Closer closes the file; it is never nil, and for the
// standard streams and "off" it does nothing.
func OpenAccessLog(spec, format string) (*AccessLog, io.Closer, error) {
	var (
		w      io.Writer
		closer io.Closer = nopCloser{}
	)
	switch spec {
	case "", "off":
		if _, err := NewAccessLog(io.Discard, format); err != nil {
			return nil, closer, err // a bad format is an error even when off
		}
		return nil, closer, nil
	case "stdout":
		w = os.Stdout
	case "stderr":
		w = os.Stderr
	default:
		f, err := os.OpenFile(spec, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err != nil {
			return nil, closer, fmt.Errorf("open access log: %w", err)
		}
		w, closer = f, f
	}
	l, err := NewAccessLog(w, format)
	if err != nil {
		closer.Close()
		return nil, nopCloser{}, err
	}
	return l, closer, nil
}

type nopCloser struct{}

func (nopCloser) Close() error { return nil }

// lineBufs holds line buffers between requests. Pointers to slices, so
// that Put does not allocate.
var lineBufs = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// maxPooledLine keeps a rare huge line (a long URL) from pinning a large
// buffer in the pool.
const maxPooledLine = 16 << 10

// Log writes r as one line. Write errors are dropped, as Envoy drops
// access-log lines it cannot write: logging must never fail a request.
func (l *AccessLog) Log(r *Record) {
	if l == nil {
		return
	}
	bp := lineBufs.Get().(*[]byte)
	line := l.encode((*bp)[:0], r)
	l.mu.Lock()
	l.w.Write(line)
	l.mu.Unlock()
	if cap(line) <= maxPooledLine {
		*bp = line
		lineBufs.Put(bp)
	}
}

// appendText renders Istio's EnvoyTextLogFormat
// (pilot/pkg/model/telemetry_logging.go):
//
//	[%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" %RESPONSE_CODE%
//	%RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS%
//	"%UPSTREAM_TRANSPORT_FAILURE_REASON%" %BYTES_RECEIVED% %BYTES_SENT% %DURATION%
//	%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%"
//	"%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%" %UPSTREAM_CLUSTER_RAW%
//	%UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS%
//	%REQUESTED_SERVER_NAME% %ROUTE_NAME%
//
// on one line. Like Envoy, a value that is not there is "-", also inside
// quotes, and durations are whole milliseconds.
func appendText(b []byte, r *Record) []byte {
	b = append(b, '[')
	b = appendStartTime(b, r.StartTime)
	b = append(b, "] \""...)
	b = appendDash(b, r.Method)
	b = append(b, ' ')
	b = appendDash(b, r.Path)
	b = append(b, ' ')
	b = appendDash(b, r.Protocol)
	b = append(b, "\" "...)
	b = strconv.AppendInt(b, int64(r.ResponseCode), 10)
	b = append(b, ' ')
	b = appendDash(b, r.ResponseFlags)
	b = append(b, ' ')
	b = appendDash(b, r.ResponseCodeDetails)
	b = append(b, ' ')
	b = appendDash(b, r.ConnectionTerminationDetails)
	b = append(b, " \""...)
	b = appendDash(b, r.UpstreamTransportFailureReason)
	b = append(b, "\" "...)
	b = strconv.AppendInt(b, r.BytesReceived, 10)
	b = append(b, ' ')
	b = strconv.AppendInt(b, r.BytesSent, 10)
	b = append(b, ' ')
	b = strconv.AppendInt(b, r.Duration.Milliseconds(), 10)
	b = append(b, ' ')
	if r.HasUpstreamServiceTime {
		b = strconv.AppendInt(b, r.UpstreamServiceTime.Milliseconds(), 10)
	} else {
		b = append(b, '-')
	}
	for _, v := range [...]string{r.XForwardedFor, r.UserAgent, r.RequestID, r.Authority, r.UpstreamHost} {
		b = append(b, " \""...)
		b = appendDash(b, v)
		b = append(b, '"')
	}
	for _, v := range [...]string{r.UpstreamCluster, r.UpstreamLocalAddress, r.DownstreamLocalAddress,
		r.DownstreamRemoteAddress, r.RequestedServerName, r.RouteName} {
		b = append(b, ' ')
		b = appendDash(b, v)
	}
	return append(b, '\n')
}

// appendJSON renders Istio's EnvoyJSONLogFormatIstio. Envoy writes the
// keys in sorted order, numbers as JSON numbers, the upstream service
// time as the header's string, and a value that is not there as null,
// except RESPONSE_FLAGS, which is "-" when no flag is set.
func appendJSON(b []byte, r *Record) []byte {
	b = append(b, `{"authority":`...)
	b = appendJSONOrNull(b, r.Authority)
	b = append(b, `,"bytes_received":`...)
	b = strconv.AppendInt(b, r.BytesReceived, 10)
	b = append(b, `,"bytes_sent":`...)
	b = strconv.AppendInt(b, r.BytesSent, 10)
	b = append(b, `,"connection_termination_details":`...)
	b = appendJSONOrNull(b, r.ConnectionTerminationDetails)
	b = append(b, `,"downstream_local_address":`...)
	b = appendJSONOrNull(b, r.DownstreamLocalAddress)
	b = append(b, `,"downstream_remote_address":`...)
	b = appendJSONOrNull(b, r.DownstreamRemoteAddress)
	b = append(b, `,"duration":`...)
	b = strconv.AppendInt(b, r.Duration.Milliseconds(), 10)
	b = append(b, `,"method":`...)
	b = appendJSONOrNull(b, r.Method)
	b = append(b, `,"path":`...)
	b = appendJSONOrNull(b, r.Path)
	b = append(b, `,"protocol":`...)
	b = appendJSONOrNull(b, r.Protocol)
	b = append(b, `,"request_id":`...)
	b = appendJSONOrNull(b, r.RequestID)
	b = append(b, `,"requested_server_name":`...)
	b = appendJSONOrNull(b, r.RequestedServerName)
	b = append(b, `,"response_code":`...)
	b = strconv.AppendInt(b, int64(r.ResponseCode), 10)
	b = append(b, `,"response_code_details":`...)
	b = appendJSONOrNull(b, r.ResponseCodeDetails)
	b = append(b, `,"response_flags":`...)
	b = appendJSONString(b, dash(r.ResponseFlags))
	b = append(b, `,"route_name":`...)
	b = appendJSONOrNull(b, r.RouteName)
	b = append(b, `,"start_time":"`...)
	b = appendStartTime(b, r.StartTime)
	b = append(b, `","upstream_cluster":`...)
	b = appendJSONOrNull(b, r.UpstreamCluster)
	b = append(b, `,"upstream_host":`...)
	b = appendJSONOrNull(b, r.UpstreamHost)
	b = append(b, `,"upstream_local_address":`...)
	b = appendJSONOrNull(b, r.UpstreamLocalAddress)
	b = append(b, `,"upstream_service_time":`...)
	if r.HasUpstreamServiceTime {
		b = append(b, '"')
		b = strconv.AppendInt(b, r.UpstreamServiceTime.Milliseconds(), 10)
		b = append(b, '"')
	} else {
		b = append(b, "null"...)
	}
	b = append(b, `,"upstream_transport_failure_reason":`...)
	b = appendJSONOrNull(b, r.UpstreamTransportFailureReason)
	b = append(b, `,"user_agent":`...)
	b = appendJSONOrNull(b, r.UserAgent)
	b = append(b, `,"x_forwarded_for":`...)
	b = appendJSONOrNull(b, r.XForwardedFor)
	return append(b, "}\n"...)
}

func appendStartTime(b []byte, t time.Time) []byte {
	if t.IsZero() {
		return append(b, '-')
	}
	return t.UTC().AppendFormat(b, envoyTimeLayout)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func appendDash(b []byte, s string) []byte {
	if s == "" {
		return append(b, '-')
	}
	return append(b, s...)
}

func appendJSONOrNull(b []byte, s string) []byte {
	if s == "" {
		return append(b, "null"...)
	}
	return appendJSONString(b, s)
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string. Invalid UTF-8 becomes
// U+FFFD, as encoding/json does, so that every line stays valid JSON
// whatever bytes a client put in a header.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < 0x80 {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i++
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
