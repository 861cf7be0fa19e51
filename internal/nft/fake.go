// Package nft is the project's one way to talk to nftables. Open gives a google/nftables connection that
// carries transactions of tens of thousands of messages (conn.go). Fake is an in-memory stand-in with the same
// transaction methods: it applies a transaction whole or not at all and refuses what the kernel refuses
// (a rule or element pointing at a missing chain or set, deleting what something still uses), so rule tests
// run without root. Dump writes a table as text from either. The package owns no table: its callers say
// which tables they write.
package nft

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"syscall"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
)

// Fake keeps tables in memory and changes them only at Flush, as the kernel commits a batch. It is safe for
// concurrent use, as nftables.Conn is.
type Fake struct {
	mu      sync.Mutex
	tables  map[tableKey]*fakeTable // committed
	pending []func(map[tableKey]*fakeTable) error
}

type tableKey struct {
	family nftables.TableFamily
	name   string
}

type fakeTable struct {
	chains map[string]*fakeChain
	sets   map[string]*fakeSet
}

type fakeChain struct {
	chain nftables.Chain
	rules [][]expr.Any
}

type fakeSet struct {
	set   nftables.Set
	elems map[string]nftables.SetElement // by elementKey
}

// NewFake returns a Fake with no tables.
func NewFake() *Fake { return &Fake{tables: map[tableKey]*fakeTable{}} }

func keyOf(t *nftables.Table) tableKey { return tableKey{t.Family, t.Name} }

// elementKey identifies an element in its set: an interval's start and end share a key.
func elementKey(e nftables.SetElement) string { return fmt.Sprintf("%x/%t", e.Key, e.IntervalEnd) }

func (f *Fake) queue(op func(map[tableKey]*fakeTable) error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pending = append(f.pending, op)
}

// Flush applies the queued changes in order to a copy of the tables and keeps the copy only when every one
// of them succeeded. The queue is emptied either way, as nftables.Conn's is.
func (f *Fake) Flush() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	ops := f.pending
	f.pending = nil
	next := cloneTables(f.tables)
	for _, op := range ops {
		if err := op(next); err != nil {
			return err
		}
	}
	f.tables = next
	return nil
}

func cloneTables(in map[tableKey]*fakeTable) map[tableKey]*fakeTable {
	out := make(map[tableKey]*fakeTable, len(in))
	for k, t := range in {
		c := &fakeTable{chains: make(map[string]*fakeChain, len(t.chains)), sets: make(map[string]*fakeSet, len(t.sets))}
		for name, ch := range t.chains {
			c.chains[name] = &fakeChain{chain: ch.chain, rules: slices.Clone(ch.rules)}
		}
		for name, s := range t.sets {
			c.sets[name] = &fakeSet{set: s.set, elems: maps.Clone(s.elems)}
		}
		out[k] = c
	}
	return out
}

func lookupTable(tables map[tableKey]*fakeTable, t *nftables.Table) (*fakeTable, error) {
	if tb := tables[keyOf(t)]; tb != nil {
		return tb, nil
	}
	return nil, fmt.Errorf("table %s: %w", t.Name, syscall.ENOENT)
}

func lookupChain(tables map[tableKey]*fakeTable, c *nftables.Chain) (*fakeChain, error) {
	tb, err := lookupTable(tables, c.Table)
	if err != nil {
		return nil, err
	}
	if ch := tb.chains[c.Name]; ch != nil {
		return ch, nil
	}
	return nil, fmt.Errorf("chain %s: %w", c.Name, syscall.ENOENT)
}

func lookupSet(tables map[tableKey]*fakeTable, s *nftables.Set) (*fakeSet, error) {
	tb, err := lookupTable(tables, s.Table)
	if err != nil {
		return nil, err
	}
	if set := tb.sets[s.Name]; set != nil {
		return set, nil
	}
	return nil, fmt.Errorf("set %s: %w", s.Name, syscall.ENOENT)
}

// AddTable creates the table unless it exists.
func (f *Fake) AddTable(t *nftables.Table) *nftables.Table {
	f.queue(func(tables map[tableKey]*fakeTable) error {
		if tables[keyOf(t)] == nil {
			tables[keyOf(t)] = &fakeTable{chains: map[string]*fakeChain{}, sets: map[string]*fakeSet{}}
		}
		return nil
	})
	return t
}

// DelTable deletes the table and everything in it.
func (f *Fake) DelTable(t *nftables.Table) {
	f.queue(func(tables map[tableKey]*fakeTable) error {
		if _, err := lookupTable(tables, t); err != nil {
			return err
		}
		delete(tables, keyOf(t))
		return nil
	})
}

// AddChain creates the chain unless it exists; an existing chain keeps its rules.
func (f *Fake) AddChain(c *nftables.Chain) *nftables.Chain {
	f.queue(func(tables map[tableKey]*fakeTable) error {
		tb, err := lookupTable(tables, c.Table)
		if err != nil {
			return err
		}
		if tb.chains[c.Name] == nil {
			tb.chains[c.Name] = &fakeChain{chain: *c}
		}
		return nil
	})
	return c
}

// FlushChain deletes the chain's rules.
func (f *Fake) FlushChain(c *nftables.Chain) {
	f.queue(func(tables map[tableKey]*fakeTable) error {
		ch, err := lookupChain(tables, c)
		if err != nil {
			return err
		}
		ch.rules = nil
		return nil
	})
}

// DelChain deletes the chain, with its rules; a chain that another chain's rule or a map's element still
// points at is busy.
func (f *Fake) DelChain(c *nftables.Chain) {
	f.queue(func(tables map[tableKey]*fakeTable) error {
		if _, err := lookupChain(tables, c); err != nil {
			return err
		}
		tb := tables[keyOf(c.Table)]
		if user := chainUser(tb, c.Name); user != "" {
			return fmt.Errorf("deleting chain %s, which %s uses: %w", c.Name, user, syscall.EBUSY)
		}
		delete(tb.chains, c.Name)
		return nil
	})
}

// AddRule appends a rule to its chain; every chain and set it names must exist.
func (f *Fake) AddRule(r *nftables.Rule) *nftables.Rule {
	exprs := slices.Clone(r.Exprs)
	f.queue(func(tables map[tableKey]*fakeTable) error {
		ch, err := lookupChain(tables, r.Chain)
		if err != nil {
			return err
		}
		tb := tables[keyOf(r.Table)]
		for _, e := range exprs {
			if err := checkReference(tb, e); err != nil {
				return fmt.Errorf("rule in chain %s: %w", r.Chain.Name, err)
			}
		}
		ch.rules = append(ch.rules, exprs)
		return nil
	})
	return r
}

// checkReference returns ENOENT when e names a chain or set the table does not have.
func checkReference(tb *fakeTable, e expr.Any) error {
	switch e := e.(type) {
	case *expr.Verdict:
		if (e.Kind == expr.VerdictJump || e.Kind == expr.VerdictGoto) && tb.chains[e.Chain] == nil {
			return fmt.Errorf("chain %s: %w", e.Chain, syscall.ENOENT)
		}
	case *expr.Lookup:
		if tb.sets[e.SetName] == nil {
			return fmt.Errorf("set %q: %w", e.SetName, syscall.ENOENT)
		}
	case *expr.Dynset:
		if tb.sets[e.SetName] == nil {
			return fmt.Errorf("set %q: %w", e.SetName, syscall.ENOENT)
		}
	}
	return nil
}

// chainUser names what points at chain: a rule of another chain or an element of a map; "" if nothing.
func chainUser(tb *fakeTable, chain string) string {
	for name, ch := range tb.chains {
		for _, rule := range ch.rules {
			for _, e := range rule {
				if v, ok := e.(*expr.Verdict); ok && v.Chain == chain && name != chain {
					return "chain " + name
				}
			}
		}
	}
	for name, s := range tb.sets {
		for _, e := range s.elems {
			if e.VerdictData != nil && e.VerdictData.Chain == chain {
				return "map " + name
			}
		}
	}
	return ""
}

// AddSet creates the set unless it exists, and adds vals to it.
func (f *Fake) AddSet(s *nftables.Set, vals []nftables.SetElement) error {
	set := *s
	f.queue(func(tables map[tableKey]*fakeTable) error {
		tb, err := lookupTable(tables, s.Table)
		if err != nil {
			return err
		}
		if tb.sets[s.Name] == nil {
			tb.sets[s.Name] = &fakeSet{set: set, elems: map[string]nftables.SetElement{}}
		}
		return addElements(tb, tb.sets[s.Name], vals)
	})
	return nil
}

// FlushSet deletes the set's elements.
func (f *Fake) FlushSet(s *nftables.Set) {
	f.queue(func(tables map[tableKey]*fakeTable) error {
		set, err := lookupSet(tables, s)
		if err != nil {
			return err
		}
		set.elems = map[string]nftables.SetElement{}
		return nil
	})
}

// DelSet deletes the set; a set that a rule looks up is busy.
func (f *Fake) DelSet(s *nftables.Set) {
	f.queue(func(tables map[tableKey]*fakeTable) error {
		if _, err := lookupSet(tables, s); err != nil {
			return err
		}
		tb := tables[keyOf(s.Table)]
		for name, ch := range tb.chains {
			for _, rule := range ch.rules {
				for _, e := range rule {
					if l, ok := e.(*expr.Lookup); ok && l.SetName == s.Name {
						return fmt.Errorf("deleting set %s, which chain %s uses: %w", s.Name, name, syscall.EBUSY)
					}
				}
			}
		}
		delete(tb.sets, s.Name)
		return nil
	})
}

// SetAddElements adds elements; an element already there with other data is refused.
func (f *Fake) SetAddElements(s *nftables.Set, vals []nftables.SetElement) error {
	vals = slices.Clone(vals)
	f.queue(func(tables map[tableKey]*fakeTable) error {
		set, err := lookupSet(tables, s)
		if err != nil {
			return err
		}
		return addElements(tables[keyOf(s.Table)], set, vals)
	})
	return nil
}

func addElements(tb *fakeTable, set *fakeSet, vals []nftables.SetElement) error {
	for _, e := range vals {
		if e.VerdictData != nil {
			if err := checkReference(tb, e.VerdictData); err != nil {
				return fmt.Errorf("element of %s: %w", set.set.Name, err)
			}
		}
		k := elementKey(e)
		if old, ok := set.elems[k]; ok && renderElement(old) != renderElement(e) {
			return fmt.Errorf("element %x of %s is there with other data: %w", e.Key, set.set.Name, syscall.EEXIST)
		}
		set.elems[k] = e
	}
	return nil
}

// SetDeleteElements deletes elements; each must be there.
func (f *Fake) SetDeleteElements(s *nftables.Set, vals []nftables.SetElement) error {
	vals = slices.Clone(vals)
	f.queue(func(tables map[tableKey]*fakeTable) error {
		set, err := lookupSet(tables, s)
		if err != nil {
			return err
		}
		for _, e := range vals {
			k := elementKey(e)
			if _, ok := set.elems[k]; !ok {
				return fmt.Errorf("element %x of %s: %w", e.Key, s.Name, syscall.ENOENT)
			}
			delete(set.elems, k)
		}
		return nil
	})
	return nil
}

// ListTablesOfFamily returns the committed tables of a family.
func (f *Fake) ListTablesOfFamily(family nftables.TableFamily) ([]*nftables.Table, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*nftables.Table
	for k := range f.tables {
		if k.family == family {
			out = append(out, &nftables.Table{Name: k.name, Family: k.family})
		}
	}
	slices.SortFunc(out, func(a, b *nftables.Table) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// ListChainsOfTableFamily returns the committed chains of every table of a family.
func (f *Fake) ListChainsOfTableFamily(family nftables.TableFamily) ([]*nftables.Chain, error) {
	tables, _ := f.ListTablesOfFamily(family)
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*nftables.Chain
	for _, t := range tables {
		tb := f.tables[keyOf(t)]
		for _, name := range slices.Sorted(maps.Keys(tb.chains)) {
			c := tb.chains[name].chain
			c.Table = t
			out = append(out, &c)
		}
	}
	return out, nil
}

// GetRules returns a chain's committed rules.
func (f *Fake) GetRules(t *nftables.Table, c *nftables.Chain) ([]*nftables.Rule, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ch, err := lookupChain(f.tables, &nftables.Chain{Name: c.Name, Table: t})
	if err != nil {
		return nil, err
	}
	out := make([]*nftables.Rule, len(ch.rules))
	for i, exprs := range ch.rules {
		out[i] = &nftables.Rule{Table: t, Chain: c, Exprs: exprs}
	}
	return out, nil
}

// GetSets returns a table's committed sets.
func (f *Fake) GetSets(t *nftables.Table) ([]*nftables.Set, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	tb, err := lookupTable(f.tables, t)
	if err != nil {
		return nil, err
	}
	var out []*nftables.Set
	for _, name := range slices.Sorted(maps.Keys(tb.sets)) {
		s := tb.sets[name].set
		s.Table = t
		out = append(out, &s)
	}
	return out, nil
}

// GetSetElements returns a set's committed elements.
func (f *Fake) GetSetElements(s *nftables.Set) ([]nftables.SetElement, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	set, err := lookupSet(f.tables, s)
	if err != nil {
		return nil, err
	}
	return slices.Collect(maps.Values(set.elems)), nil
}
