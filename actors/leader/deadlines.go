package leader

import (
	"container/heap"
	"time"
)

// A copy's time limit grows with the bytes queued ahead of it. A member
// stores what it is sent in order, so a copy sent behind 80 MiB of others
// waits for them: under a burst of large messages a fixed limit timed out
// copies that were merely queued, and each timeout sent the copy to
// another member, or again to the same one, adding to the queues it was
// waiting in. Measured on this project's 2-core machine with 24
// connections SETting 4 MB messages, three rounds in turns: 3.1, 5.6 and
// 2.0 SETs a second with 30, 11 and 24 copies timed out, against 5.6, 6.1
// and 4.5 with none (docs/benchmarks.md, "Large messages").

// DefaultMemberRate is the slowest rate, in bytes a second, at which a
// member is expected to store the copies sent to it (Config.MemberRate).
const DefaultMemberRate = 16 << 20

// memberTimeLimit is how long a member may take to answer a request: base,
// plus the time inflightBytes (what is in flight to that member, the
// request's own included) take at rate bytes a second (rate 0: base
// alone). A read counts the size of the message it brings back.
func memberTimeLimit(base time.Duration, inflightBytes uint64, rate uint64) time.Duration {
	if rate == 0 {
		return base
	}
	return base + time.Duration(float64(inflightBytes)/float64(rate)*float64(time.Second))
}

// deadlineKind is what the leader does when a deadline comes due.
type deadlineKind uint8

const (
	// timeout fails the request: its member did not answer in time.
	timeout deadlineKind = iota
	// resend sends a copy still unanswered to its member once more
	// (Config.StoreResendAfter).
	resend
	// hedge asks one more member for a late request while it may still
	// be answered: a copy is stored on another member too
	// (Config.StoreHedgeAfter), a read asked of the next replica too
	// (Config.ReadHedgeAfter).
	hedge
)

// deadlineItem is when the leader acts on the request sent to a member
// with id, if it is still unanswered then: it times out, or, before that,
// it is resent or hedged.
type deadlineItem struct {
	id       uint64
	deadline time.Time
	kind     deadlineKind
}

// deadlineHeap holds the deadlines of the requests in flight to members,
// the earliest first. Deadlines are not added in order, since each depends
// on its member's queue (memberTimeLimit). Answered requests stay until
// their deadline passes and are then skipped. Equal deadlines come due in
// the order their requests were sent.
type deadlineHeap []deadlineItem

func (h deadlineHeap) Len() int { return len(h) }
func (h deadlineHeap) Less(i, j int) bool {
	if h[i].deadline.Equal(h[j].deadline) {
		return h[i].id < h[j].id
	}
	return h[i].deadline.Before(h[j].deadline)
}
func (h deadlineHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }

// Push and Pop are for container/heap; use add and due.
func (h *deadlineHeap) Push(x any) { *h = append(*h, x.(deadlineItem)) }

// Pop is for container/heap.
func (h *deadlineHeap) Pop() any {
	old := *h
	item := old[len(old)-1]
	*h = old[:len(old)-1]
	return item
}

func (h *deadlineHeap) add(item deadlineItem) { heap.Push(h, item) }

// due removes and returns the earliest deadline if it is not after now.
func (h *deadlineHeap) due(now time.Time) (deadlineItem, bool) {
	if len(*h) == 0 || (*h)[0].deadline.After(now) {
		return deadlineItem{}, false
	}
	return heap.Pop(h).(deadlineItem), true
}
