package meta

import "github.com/tolerex/tolerex/messages"

// RequestWindow is how many recently applied request ids the state
// remembers, so that a request proposed again after a failover takes
// effect once. It bounds how long a gateway may keep re-sending a request:
// at 20,000 writes a second the window covers about 6 s. Every replica
// must use the same value (it decides what an entry does), so changing it
// changes the state machine.
const RequestWindow = 1 << 17

// requestKey is a RequestId as a map key.
type requestKey struct{ origin, seq uint64 }

// requestKeyOf returns the key of id, and whether the entry carries one.
func requestKeyOf(id *messages.RequestId) (requestKey, bool) {
	if id.GetOrigin() == 0 {
		return requestKey{}, false
	}
	return requestKey{origin: id.GetOrigin(), seq: id.GetSeq()}, true
}

// requestWindow remembers the last RequestWindow request ids applied and
// what each did, oldest first: a ring in apply order, so every replica
// forgets the same ids at the same point.
type requestWindow struct {
	ring    []requestKey
	head    int // the oldest entry once the ring is full
	results map[requestKey]messages.ReplyCode
	// count is how many requests were ever added: the window holds the
	// last min(count, RequestWindow) of them.
	count uint64
}

func newRequestWindow() requestWindow {
	return requestWindow{results: make(map[requestKey]messages.ReplyCode)}
}

// lookup returns what the request did, if it is in the window.
func (w *requestWindow) lookup(k requestKey) (messages.ReplyCode, bool) {
	code, ok := w.results[k]
	return code, ok
}

// add records an applied request, forgetting the oldest if the window is
// full.
func (w *requestWindow) add(k requestKey, code messages.ReplyCode) {
	if len(w.ring) < RequestWindow {
		w.ring = append(w.ring, k)
	} else {
		delete(w.results, w.ring[w.head])
		w.ring[w.head] = k
		w.head = (w.head + 1) % RequestWindow
	}
	w.results[k] = code
	w.count++
}

// tooLate reports whether a request bounded by windowEnd (RequestId's
// window_end; 0 for none) comes too late to be applied: requests added
// since it was taken may have pushed an earlier attempt of it out of the
// window, so applying it could apply it twice.
func (w *requestWindow) tooLate(windowEnd uint64) bool {
	return windowEnd != 0 && w.count >= windowEnd
}

// each calls f for every remembered request, oldest first.
func (w *requestWindow) each(f func(k requestKey, code messages.ReplyCode)) {
	for i := range w.ring {
		k := w.ring[(w.head+i)%len(w.ring)]
		f(k, w.results[k])
	}
}

// len is the number of remembered requests.
func (w *requestWindow) len() int { return len(w.ring) }
