package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// event is one line of `ctr events`:
//
//	2026-11-28 13:54:00.787278693 +0000 UTC akbench /tasks/create {"container_id":"x",...}
type event struct {
	TS      time.Time // containerd's timestamp of the event
	Arrived time.Time // when the line reached this process
	Topic   string
	ID      string // container id
	Pid     int
}

const ctrEventTime = "2006-01-02 15:04:05.999999999 -0700 MST"

func parseEvent(line string, arrived time.Time) (event, bool) {
	f := strings.SplitN(line, " ", 7)
	if len(f) < 6 {
		return event{}, false
	}
	ts, err := time.Parse(ctrEventTime, strings.Join(f[:4], " "))
	if err != nil {
		return event{}, false
	}
	ev := event{TS: ts, Arrived: arrived, Topic: f[5]}
	if len(f) == 7 {
		var body struct {
			ContainerID string `json:"container_id"`
			ID          string `json:"id"`
			Pid         int    `json:"pid"`
		}
		if json.Unmarshal([]byte(f[6]), &body) == nil {
			ev.ID, ev.Pid = body.ContainerID, body.Pid
			if ev.ID == "" {
				ev.ID = body.ID
			}
		}
	}
	return ev, true
}

// hub is one `ctr events` subscriber for a whole scenario; it keeps every event
// and wakes whoever waits for a (topic, container) pair.
type hub struct {
	cmd     *exec.Cmd
	mu      sync.Mutex
	log     []event
	waiters map[string][]chan event
	done    chan struct{}
}

func key(topic, id string) string { return topic + "\x00" + id }

func (e *env) subscribe(ctx context.Context) (*hub, error) {
	cmd := exec.CommandContext(ctx, e.ctrPath, "--address", e.sock, "-n", namespace, "events")
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("ctr events: %w", err)
	}
	h := &hub{cmd: cmd, waiters: map[string][]chan event{}, done: make(chan struct{})}
	go func() {
		defer close(h.done)
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 4<<20)
		for sc.Scan() {
			ev, ok := parseEvent(sc.Text(), time.Now())
			if !ok {
				continue
			}
			h.mu.Lock()
			h.log = append(h.log, ev)
			k := key(ev.Topic, ev.ID)
			for _, ch := range h.waiters[k] {
				ch <- ev
			}
			delete(h.waiters, k)
			h.mu.Unlock()
		}
	}()
	return h, nil
}

// find returns the first event seen for (topic, id).
func (h *hub) find(topic, id string) (event, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, ev := range h.log {
		if ev.Topic == topic && ev.ID == id {
			return ev, true
		}
	}
	return event{}, false
}

// wait returns the event for (topic, id), waiting up to timeout for it.
func (h *hub) wait(ctx context.Context, topic, id string, timeout time.Duration) (event, error) {
	h.mu.Lock()
	for _, ev := range h.log {
		if ev.Topic == topic && ev.ID == id {
			h.mu.Unlock()
			return ev, nil
		}
	}
	ch := make(chan event, 1)
	k := key(topic, id)
	h.waiters[k] = append(h.waiters[k], ch)
	h.mu.Unlock()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case ev := <-ch:
		return ev, nil
	case <-t.C:
		return event{}, fmt.Errorf("no %s event for %s within %v", topic, id, timeout)
	case <-h.done:
		return event{}, fmt.Errorf("ctr events ended while waiting for %s of %s", topic, id)
	case <-ctx.Done():
		return event{}, ctx.Err()
	}
}

func (h *hub) close() {
	if h.cmd.Process != nil {
		_ = h.cmd.Process.Kill()
	}
	_ = h.cmd.Wait()
	<-h.done
}
