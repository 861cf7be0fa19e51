package nft

import (
	"errors"
	"fmt"
	"syscall"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"

	"github.com/nodeagent/nodeagent/internal/netnsutil"
)

// The connection asks the kernel to acknowledge only the last message of a batch; the library must still
// see every message's outcome: success, or the kernel's error for the message that failed, with nothing of
// a failed batch applied.
func TestConnReportsEachBatchOutcomeAsTheKernelGivesIt(t *testing.T) {
	conn := openInNewNS(t)
	table := &nftables.Table{Name: "conn-test", Family: nftables.TableFamilyINet}
	conn.AddTable(table)
	const chains = 5000 // far more acknowledgements than a default socket buffer holds
	for i := range chains {
		conn.AddChain(&nftables.Chain{Name: fmt.Sprintf("c%d", i), Table: table})
	}
	must(t, conn.Flush())
	got, err := conn.ListChainsOfTableFamily(nftables.TableFamilyINet)
	must(t, err)
	if len(got) != chains {
		t.Fatalf("%d chains after the batch, want %d", len(got), chains)
	}

	// A rule jumping to a chain that does not exist fails the whole batch, the new chain included.
	conn.AddChain(&nftables.Chain{Name: "added", Table: table})
	conn.AddRule(&nftables.Rule{Table: table, Chain: &nftables.Chain{Name: "c1", Table: table},
		Exprs: []expr.Any{&expr.Verdict{Kind: expr.VerdictJump, Chain: "missing"}}})
	conn.AddChain(&nftables.Chain{Name: "added-too", Table: table})
	if err := conn.Flush(); !errors.Is(err, syscall.ENOENT) {
		t.Errorf("a batch with a jump to a missing chain: %v, want ENOENT", err)
	}
	if _, err := conn.ListChain(table, "added"); err == nil {
		t.Error("a chain of the failed batch was created")
	}
	// The connection is still in step with the kernel afterwards.
	conn.AddChain(&nftables.Chain{Name: "after", Table: table})
	must(t, conn.Flush())
	if _, err := conn.ListChain(table, "after"); err != nil {
		t.Errorf("the batch after a failed one: %v", err)
	}
	if _, err := conn.ListTableOfFamily("no-such-table", nftables.TableFamilyINet); !errors.Is(err, syscall.ENOENT) {
		t.Errorf("asking for a missing table: %v, want ENOENT", err)
	}
}

// openInNewNS opens a connection in a network namespace of the test's own, which goes with every rule in it
// when the test ends.
func openInNewNS(t *testing.T) *nftables.Conn {
	t.Helper()
	ns, err := netnsutil.New()
	if err != nil {
		t.Skipf("creating a network namespace needs root: %v", err)
	}
	t.Cleanup(func() { _ = ns.Close() })
	conn, err := Open(int(ns))
	if err != nil {
		t.Fatal(err)
	}
	return conn
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
