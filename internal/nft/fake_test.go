package nft

import (
	"errors"
	"strings"
	"syscall"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
)

// conn is what the cases below do to a backend: the proxy's Conn, plus reading rules back.
type conn interface {
	Reader
	AddTable(t *nftables.Table) *nftables.Table
	AddChain(c *nftables.Chain) *nftables.Chain
	FlushChain(c *nftables.Chain)
	DelChain(c *nftables.Chain)
	AddRule(r *nftables.Rule) *nftables.Rule
	AddSet(s *nftables.Set, vals []nftables.SetElement) error
	DelSet(s *nftables.Set)
	SetAddElements(s *nftables.Set, vals []nftables.SetElement) error
	SetDeleteElements(s *nftables.Set, vals []nftables.SetElement) error
	Flush() error
}

var (
	testTable = &nftables.Table{Name: "fake-test", Family: nftables.TableFamilyINet}
	chainA    = &nftables.Chain{Name: "a", Table: testTable}
	chainB    = &nftables.Chain{Name: "b", Table: testTable}
	vmapSet   = &nftables.Set{Table: testTable, Name: "ports", IsMap: true, KeyType: nftables.TypeInetService, DataType: nftables.TypeVerdict}
)

func port(p uint16) []byte { return []byte{byte(p >> 8), byte(p)} }

// setUp makes a table whose chain a jumps to b, and a map sending port 80 to b; chain b is then busy twice.
func setUp(t *testing.T, c conn) {
	t.Helper()
	c.AddTable(testTable)
	c.AddChain(&nftables.Chain{Name: "hooked", Table: testTable, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter})
	c.AddChain(chainA)
	c.AddChain(chainB)
	must(t, c.AddSet(vmapSet, []nftables.SetElement{{Key: port(80), VerdictData: &expr.Verdict{Kind: expr.VerdictJump, Chain: "b"}}}))
	c.AddRule(&nftables.Rule{Table: testTable, Chain: chainA, Exprs: []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Lookup{SourceRegister: 1, SetName: vmapSet.Name, SetID: vmapSet.ID, DestRegister: 0, IsDestRegSet: true},
	}})
	c.AddRule(&nftables.Rule{Table: testTable, Chain: chainA, Exprs: []expr.Any{
		&expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{1, 0, 0, 0}},
		&expr.Verdict{Kind: expr.VerdictJump, Chain: "b"},
	}})
	c.AddRule(&nftables.Rule{Table: testTable, Chain: chainB, Exprs: []expr.Any{&expr.Verdict{Kind: expr.VerdictAccept}}})
	must(t, c.Flush())
}

// The Fake refuses what the kernel refuses, with the same error, and applies nothing of a refused batch;
// what it accepts it holds as the kernel does (the two dumps are equal). The kernel half needs root.
func TestFakeRefusesWhatTheKernelRefuses(t *testing.T) {
	cases := []struct {
		name  string
		batch func(c conn)
		want  error
	}{
		{"a jump to a missing chain", func(c conn) {
			c.AddChain(&nftables.Chain{Name: "new", Table: testTable})
			c.AddRule(&nftables.Rule{Table: testTable, Chain: chainA, Exprs: []expr.Any{&expr.Verdict{Kind: expr.VerdictGoto, Chain: "missing"}}})
		}, syscall.ENOENT},
		{"a map element pointing at a missing chain", func(c conn) {
			_ = c.SetAddElements(vmapSet, []nftables.SetElement{{Key: port(81), VerdictData: &expr.Verdict{Kind: expr.VerdictJump, Chain: "missing"}}})
		}, syscall.ENOENT},
		{"a lookup in a missing set", func(c conn) {
			c.AddRule(&nftables.Rule{Table: testTable, Chain: chainA, Exprs: []expr.Any{
				&expr.Meta{Key: expr.MetaKeyMARK, Register: 1}, &expr.Lookup{SourceRegister: 1, SetName: "missing"}}})
		}, syscall.ENOENT},
		{"deleting a chain another chain jumps to", func(c conn) {
			c.DelSet(vmapSet) // not enough: chain a's second rule still jumps there
		}, syscall.EBUSY},
		{"deleting a chain a map points at", func(c conn) {
			c.FlushChain(chainA)
			c.DelChain(chainB)
		}, syscall.EBUSY},
		{"deleting a set a rule looks up", func(c conn) { c.DelSet(vmapSet) }, syscall.EBUSY},
		{"deleting an element that is not there", func(c conn) {
			_ = c.SetDeleteElements(vmapSet, []nftables.SetElement{{Key: port(443)}})
		}, syscall.ENOENT},
		{"accepted: b emptied of users, then deleted", func(c conn) {
			c.FlushChain(chainA)
			_ = c.SetDeleteElements(vmapSet, []nftables.SetElement{{Key: port(80)}})
			c.DelChain(chainB)
			c.DelSet(vmapSet)
			c.AddRule(&nftables.Rule{Table: testTable, Chain: chainA, Exprs: []expr.Any{&expr.Counter{}, &expr.Verdict{Kind: expr.VerdictDrop}}})
		}, nil},
	}
	backends := map[string]func(t *testing.T) conn{
		"fake":   func(*testing.T) conn { return NewFake() },
		"kernel": func(t *testing.T) conn { return openInNewNS(t) },
	}
	dumps := map[string]map[string]string{} // case → backend → dump after the batch
	for _, tc := range cases {
		dumps[tc.name] = map[string]string{}
		for backend, open := range backends {
			t.Run(backend+"/"+tc.name, func(t *testing.T) {
				c := open(t)
				setUp(t, c)
				before := dump(t, c)
				tc.batch(c)
				err := c.Flush()
				switch {
				case tc.want == nil && err != nil:
					t.Fatalf("refused: %v", err)
				case tc.want != nil && !errors.Is(err, tc.want):
					t.Fatalf("Flush: %v, want %v", err, tc.want)
				}
				after := dump(t, c)
				if tc.want != nil && after != before {
					t.Errorf("a refused batch changed the table:\nbefore\n%s\nafter\n%s", before, after)
				}
				dumps[tc.name][backend] = after
			})
		}
	}
	for name, byBackend := range dumps {
		if k, ok := byBackend["kernel"]; ok && k != byBackend["fake"] {
			t.Errorf("%s: the kernel holds\n%s\nthe fake holds\n%s", name, k, byBackend["fake"])
		}
	}
}

func dump(t *testing.T, c conn) string {
	t.Helper()
	d, err := Dump(c, testTable)
	must(t, err)
	if !strings.Contains(d, "chain a") {
		t.Fatalf("the dump lacks chain a:\n%s", d)
	}
	return d
}
