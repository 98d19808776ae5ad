package storage

import (
	"errors"
	"fmt"
	"math/big"

	"github.com/cockroachdb/pebble/v2"

	"github.com/tolerex/tolerex/storage/internal/pebbledb"
)

// Message keys are the byte 'm' followed by 16 bytes, so every message key
// has a position: those 16 bytes read as a 128-bit big-endian number.
// Positions run from 0 to endPosition(), which stands for
// messagesUpperBound. Skipping a damaged region works on positions.
func endPosition() *big.Int {
	return new(big.Int).Lsh(big.NewInt(1), 8*(keyLen-1))
}

// countRecords scans every message to initialise Stats.Messages and
// Stats.Bytes. A damaged region (a block or sstable Pebble cannot read)
// does not stop it: it records the first damage in s.damage, skips to the
// first readable key after the region and goes on, so the counts cover
// every readable record.
func (s *Store) countRecords() error {
	var messages, bytes uint64
	from, end := big.NewInt(0), endPosition()
	for from.Cmp(end) < 0 {
		next, err := s.countFrom(from, &messages, &bytes)
		if err == nil {
			break
		}
		if !pebbledb.IsDamage(err) {
			return fmt.Errorf("count records: %w", err)
		}
		if s.damage == nil {
			s.damage = fmt.Errorf("count records: %w: %w", ErrCorrupt, pebbledb.Readable(err))
		}
		resume, err := s.firstReadable(next)
		if err != nil {
			return fmt.Errorf("count records: %w", err)
		}
		s.log.Error().Err(s.damage).Hex("from", positionKey(next)).Hex("resume", positionKey(resume)).
			Msg("skipping damaged records while counting; reads of them will fail")
		// Resume strictly after where the damage was met, so the loop always
		// makes progress.
		from = maxPosition(resume, new(big.Int).Add(next, big.NewInt(1)))
	}
	s.messages.Store(messages)
	s.bytes.Store(bytes)
	return nil
}

// countFrom counts the records from position from on into messages and
// bytes. On error it returns the position of the first key it could not
// account for.
func (s *Store) countFrom(from *big.Int, messages, bytes *uint64) (next *big.Int, err error) {
	next = new(big.Int).Set(from)
	lower := positionKey(from)
	if from.Sign() == 0 {
		lower = messagesLowerBound()
	}
	iter, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: messagesUpperBound()})
	if err != nil {
		return next, err
	}
	for valid := iter.First(); valid; valid = iter.Next() {
		value, err := iter.ValueAndErr()
		if err != nil {
			return next, errors.Join(fmt.Errorf("read %x: %w", iter.Key(), err), iter.Close())
		}
		*messages++
		*bytes += uint64(storedPayloadLen(value))
		next = keyPosition(iter.Key())
		next.Add(next, big.NewInt(1))
	}
	return next, iter.Close()
}

// firstReadable returns the smallest position p >= from such that seeking
// to p succeeds, that is the first key at or after p is readable without
// touching the damaged region that starts at from (endPosition() if none).
// Seeks below the end of the damaged region load a damaged block and fail;
// seeks past it do not, so a binary search of at most 129 seeks finds the
// end of the region. Keys between from and the result that sit in
// readable blocks of another level may be skipped too; counts after damage
// are a best effort.
func (s *Store) firstReadable(from *big.Int) (*big.Int, error) {
	lo, hi := new(big.Int).Set(from), endPosition()
	for lo.Cmp(hi) < 0 {
		mid := new(big.Int).Add(lo, hi)
		mid.Rsh(mid, 1)
		ok, err := s.seekSucceeds(mid)
		if err != nil {
			return nil, err
		}
		if ok {
			hi = mid
		} else {
			lo = mid.Add(mid, big.NewInt(1))
		}
	}
	return hi, nil
}

// seekSucceeds reports whether seeking to position p reads without damage.
// Errors other than damage are returned.
func (s *Store) seekSucceeds(p *big.Int) (bool, error) {
	iter, err := s.db.NewIter(&pebble.IterOptions{LowerBound: positionKey(p), UpperBound: messagesUpperBound()})
	if err != nil {
		return false, err
	}
	if iter.First() {
		_, err = iter.ValueAndErr()
	}
	err = errors.Join(err, iter.Error(), iter.Close())
	switch {
	case err == nil:
		return true, nil
	case pebbledb.IsDamage(err):
		return false, nil
	default:
		return false, err
	}
}

// keyPosition returns the position of the first message key at or after
// key, which must lie within the message key bounds.
func keyPosition(key []byte) *big.Int {
	var digits [keyLen - 1]byte
	copy(digits[:], key[1:])
	p := new(big.Int).SetBytes(digits[:])
	if len(key) > keyLen {
		// Longer than a message key: it sorts after the message key that
		// shares its first keyLen bytes.
		p.Add(p, big.NewInt(1))
	}
	return p
}

// positionKey returns the message key at position p, or
// messagesUpperBound for endPosition().
func positionKey(p *big.Int) []byte {
	if p.Cmp(endPosition()) >= 0 {
		return messagesUpperBound()
	}
	key := make([]byte, keyLen)
	key[0] = messagePrefix
	p.FillBytes(key[1:])
	return key
}

func maxPosition(a, b *big.Int) *big.Int {
	if a.Cmp(b) >= 0 {
		return a
	}
	return b
}
