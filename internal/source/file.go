// Package source turns where configuration lives into a stream of full
// configuration sets. A source never sends deltas: every emit is the whole
// configuration, so the engine needs no memory of what came before
// (guide §9.1). Sources only read; validation and compilation are the
// engine's job.
package source

import (
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/fsnotify/fsnotify"

	"github.com/michi-mesh/michi/internal/config"
)

// DefaultDebounce is how long File waits after the last file event before
// it reloads, so that an editor's save (often a rename, a create and a
// chmod) or a `kubectl cp` of many files costs one reload.
const DefaultDebounce = 100 * time.Millisecond

// maxDelayFactor bounds how long a steady stream of events can postpone a
// reload: at most this many debounce periods after the first event, so a
// change is live within a second even while something keeps writing.
const maxDelayFactor = 5

// kubeDataLink is the symlink Kubernetes swaps atomically when a mounted
// ConfigMap or Secret changes (pkg/volume/util AtomicWriter). It is the
// one dotfile whose events matter: the visible files are symlinks through
// it and see no event of their own.
const kubeDataLink = "..data"

// File watches manifest files and directories (recursively, *.yaml,
// *.yml and *.json, as config.ListFiles expands them) and emits the full
// configuration at start and after every change.
//
// Directories are watched rather than files, so that editors that save
// by renaming a new file over the old one, new files and new
// subdirectories are all seen. Hidden files and "~" backups are ignored.
// Events are debounced, and a reload whose files are byte-for-byte the
// same as the last emitted ones (a touch, an identical save) emits
// nothing.
type File struct {
	// Paths are the -c arguments: files and directories.
	Paths []string
	// Load is passed to config.Load.
	Load config.LoadOptions
	// Logger receives watch problems; nil means slog.Default().
	Logger *slog.Logger
	// Debounce is the quiet period before a reload (default
	// DefaultDebounce).
	Debounce time.Duration

	// reloaded, when set by tests, is called after every reload attempt
	// with whether it emitted.
	reloaded func(emitted bool)
}

// Run emits the configuration, then watches for changes and emits again
// after each, until ctx is done. emit is called from Run's goroutine, one
// call at a time. Run returns nil when ctx is done, and an error only when
// the file watcher cannot be started.
func (f *File) Run(ctx context.Context, emit func(*config.Set, config.Diagnostics)) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch configuration: %w", err)
	}
	defer w.Close()

	fw := &fileWatch{
		File:    f,
		log:     f.Logger,
		watcher: w,
		roots:   make([]string, len(f.Paths)),
	}
	if fw.log == nil {
		fw.log = slog.Default()
	}
	for i, p := range f.Paths {
		fw.roots[i] = filepath.Clean(p)
	}
	debounce := f.Debounce
	if debounce <= 0 {
		debounce = DefaultDebounce
	}

	fw.reload(emit, true)

	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	var deadline time.Time // when the pending reload must happen; zero if none
	schedule := func() {
		now := time.Now()
		if deadline.IsZero() {
			deadline = now.Add(maxDelayFactor * debounce)
		}
		timer.Reset(min(debounce, deadline.Sub(now)))
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			if fw.relevant(ev) {
				schedule()
			}
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			// Typically an inotify queue overflow: events were lost, so
			// reload to be sure nothing was missed.
			fw.log.Warn("configuration watch error; reloading", "error", err)
			schedule()
		case <-timer.C:
			deadline = time.Time{}
			if fw.reload(emit, false) {
				schedule()
			}
		}
	}
}

// watchKind says why a directory is watched.
type watchKind uint8

const (
	// watchTree: the directory is a -c directory or below one; every
	// manifest and subdirectory in it counts.
	watchTree watchKind = 1 << iota
	// watchParent: the directory holds a -c path; only events about that
	// path (and Kubernetes' ..data link) count.
	watchParent
)

// fileWatch is the state of one File.Run.
type fileWatch struct {
	*File
	log     *slog.Logger
	watcher *fsnotify.Watcher
	roots   []string
	watched map[string]watchKind // as of the last syncWatches
	hash    uint64               // of the last emitted files' names and contents
	sizes   map[string]int       // file sizes at the last emit
	waited  bool                 // a reload was put off because a file was just emptied
}

// reload re-reads every file and emits the configuration, unless nothing
// changed since the last emit. force emits regardless (the first load).
//
// A file that had content and is now empty is most likely being written
// in place (truncate, then write): emitting it would publish a table
// without that file's routes for a moment. Such a reload is put off once,
// by returning retry; if the file is still empty on the next reload, the
// emptying was meant and is emitted.
func (fw *fileWatch) reload(emit func(*config.Set, config.Diagnostics), force bool) (retry bool) {
	// Watch first, read second: a file created after its directory's
	// watch exists raises an event, and one created before is read now.
	fw.syncWatches()
	h, sizes := fw.contentHash()
	if !force && !fw.waited && fw.emptied(sizes) {
		fw.waited = true
		return true
	}
	fw.waited = false
	emitted := force || h != fw.hash
	if emitted {
		fw.hash, fw.sizes = h, sizes
		set, diags := config.Load(fw.Paths, fw.Load)
		emit(set, diags)
	}
	if fw.reloaded != nil {
		fw.reloaded(emitted)
	}
	return false
}

// emptied reports whether a file that had content at the last emit is
// now empty.
func (fw *fileWatch) emptied(sizes map[string]int) bool {
	for name, n := range sizes {
		if n == 0 && fw.sizes[name] > 0 {
			return true
		}
	}
	return false
}

// contentHash hashes the names and bytes of every file the configuration
// is read from, or the error that stops listing them, and returns each
// file's size.
func (fw *fileWatch) contentHash() (uint64, map[string]int) {
	d := xxhash.New()
	files, err := config.ListFiles(fw.Paths)
	if err != nil {
		d.WriteString("list error\x00" + err.Error())
		return d.Sum64(), nil
	}
	sizes := make(map[string]int, len(files))
	for _, name := range files {
		data, err := os.ReadFile(name)
		d.WriteString(name)
		d.WriteString("\x00")
		if err != nil {
			d.WriteString("read error\x00" + err.Error())
		} else {
			sizes[name] = len(data)
			fmt.Fprintf(d, "%d\x00", len(data))
			d.Write(data)
		}
		d.WriteString("\x00")
	}
	return d.Sum64(), sizes
}

// syncWatches watches every directory that can affect the configuration:
// each -c directory and its subdirectories (hidden ones skipped, as
// config.ListFiles skips them), and the directory holding each -c path,
// so that a path that is replaced, or created late, is noticed.
func (fw *fileWatch) syncWatches() {
	want := map[string]watchKind{}
	for _, root := range fw.roots {
		want[filepath.Dir(root)] |= watchParent
		info, err := os.Stat(root)
		if err != nil || !info.IsDir() {
			continue
		}
		filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return nil // unreadable: config.Load reports it
			}
			if !d.IsDir() {
				return nil
			}
			if path != root && hidden(d.Name()) {
				return filepath.SkipDir
			}
			want[path] |= watchTree
			return nil
		})
	}
	// The watcher's own list is the truth: it drops the watch of a
	// directory that was deleted or moved away, even when one of the same
	// name has appeared since.
	active := map[string]bool{}
	for _, dir := range fw.watcher.WatchList() {
		active[dir] = true
	}
	for dir := range active {
		if _, ok := want[dir]; !ok {
			fw.watcher.Remove(dir)
		}
	}
	for dir := range want {
		if active[dir] {
			continue
		}
		if err := fw.watcher.Add(dir); err != nil && !os.IsNotExist(err) {
			fw.log.Warn("cannot watch configuration directory", "dir", dir, "error", err)
		}
	}
	fw.watched = want
}

// relevant reports whether an event can change the configuration.
func (fw *fileWatch) relevant(ev fsnotify.Event) bool {
	if ev.Op == fsnotify.Chmod {
		return false // permissions changes on their own change no content
	}
	name := filepath.Clean(ev.Name)
	base := filepath.Base(name)
	kind := fw.watched[filepath.Dir(name)]
	if kind&watchParent != 0 {
		for _, root := range fw.roots {
			if name == root {
				return true
			}
		}
		if base == kubeDataLink {
			return true
		}
	}
	if kind&watchTree == 0 {
		return false
	}
	if base == kubeDataLink {
		return true
	}
	if hidden(base) || strings.HasSuffix(base, "~") {
		return false // editor swap files, locks and backups
	}
	if isManifest(base) {
		return true
	}
	// A subdirectory appearing, disappearing or moving changes which
	// manifests there are.
	if _, ok := fw.watched[name]; ok {
		return true
	}
	info, err := os.Lstat(name)
	return err == nil && info.IsDir()
}

func hidden(name string) bool { return strings.HasPrefix(name, ".") }

func isManifest(name string) bool {
	for _, ext := range config.ManifestExtensions {
		if strings.HasSuffix(name, ext) {
			return true
		}
	}
	return false
}
