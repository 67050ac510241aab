package demo

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"io"
	"strings"
	"time"
)

// ANSI control sequences for redrawing in place: cursor home, clear to
// the end of the line, clear to the end of the screen, clear the screen.
const (
	ansiHome        = "\x1b[H"
	ansiClearLine   = "\x1b[K"
	ansiClearBelow  = "\x1b[J"
	ansiClearScreen = "\x1b[2J"
)

// Summary shows the live summary until its context is done.
type Summary struct {
	Scraper *Scraper
	Screen  *Screen
	Out     io.Writer
	// Terminal redraws the whole screen in place each interval. Otherwise
	// Summary prints one line per interval in which the counts changed,
	// which suits a pipe or a log file.
	Terminal bool
	// Interval is the time between redraws; zero means one second.
	Interval time.Duration
}

// Run draws at once and then every interval, until ctx is done.
func (s *Summary) Run(ctx context.Context) {
	interval := cmp.Or(s.Interval, time.Second)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	if s.Terminal {
		io.WriteString(s.Out, ansiClearScreen)
	}
	var prev *Snapshot
	var lastLine string
	for {
		scrapeCtx, cancel := context.WithTimeout(ctx, interval)
		cur, err := s.Scraper.Scrape(scrapeCtx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		switch {
		case s.Terminal:
			s.redraw(prev, cur, err)
		case err != nil:
			fmt.Fprintf(s.Out, "%s admin %s not answering: %v\n", time.Now().Format(time.TimeOnly), s.Scraper.Admin, err)
		default:
			// Print only changes: the line without its time stamp.
			line := s.Screen.Line(cur)
			if _, counts, _ := strings.Cut(line, " "); counts != lastLine {
				fmt.Fprintln(s.Out, line)
				lastLine = counts
			}
		}
		if err == nil {
			prev = cur
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// redraw replaces the screen with the summary of cur, clearing each line's
// leftovers rather than the whole screen first, which would flicker.
func (s *Summary) redraw(prev, cur *Snapshot, err error) {
	var b bytes.Buffer
	if err != nil {
		fmt.Fprintf(&b, "michi demo   %s\n\nadmin %s not answering: %v\n", time.Now().Format(time.TimeOnly), s.Scraper.Admin, err)
	} else {
		s.Screen.Render(&b, prev, cur)
	}
	out := ansiHome + strings.ReplaceAll(b.String(), "\n", ansiClearLine+"\n") + ansiClearBelow
	io.WriteString(s.Out, out)
}
