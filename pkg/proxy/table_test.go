package proxy

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/nodeagent/nodeagent/internal/netnsutil"
	"github.com/nodeagent/nodeagent/internal/nft"
)

// newNetNS returns a connection to nftables in a fresh network namespace of the test's own. The namespace
// lives as long as its file descriptor, so it and every rule in it go when the test ends, even on failure:
// nothing here can touch the host's tables.
func newNetNS(t *testing.T) *nftables.Conn {
	t.Helper()
	ns, err := netnsutil.New()
	if err != nil {
		t.Skipf("creating a network namespace needs root: %v", err)
	}
	t.Cleanup(func() { _ = ns.Close() })
	conn, err := nftables.New(nftables.WithNetNSFd(int(ns)))
	if err != nil {
		t.Fatal(err)
	}
	return conn
}

func tableNames(t *testing.T, conn *nftables.Conn) []string {
	t.Helper()
	tables, err := conn.ListTables()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tb := range tables {
		names = append(names, tb.Name)
	}
	return names
}

func TestCleanupRemovesOnlyTheAgentsTable(t *testing.T) {
	conn := newNetNS(t)
	ours := conn.AddTable(&nftables.Table{Name: TableName, Family: nftables.TableFamilyINet})
	conn.AddChain(&nftables.Chain{Name: "services", Table: ours})
	other := conn.AddTable(&nftables.Table{Name: "someone-else", Family: nftables.TableFamilyINet})
	conn.AddChain(&nftables.Chain{Name: "input", Table: other})
	conn.AddTable(&nftables.Table{Name: TableName, Family: nftables.TableFamilyIPv4}) // same name, not ours
	if err := conn.Flush(); err != nil {
		t.Fatal(err)
	}

	if err := Cleanup(conn); err != nil {
		t.Fatal(err)
	}
	names := tableNames(t, conn)
	if len(names) != 2 || !slices.Contains(names, "someone-else") {
		t.Errorf("tables after cleanup = %v, want someone-else and ip %s left", names, TableName)
	}
	tables, _ := conn.ListTablesOfFamily(nftables.TableFamilyINet)
	for _, tb := range tables {
		if tb.Name == TableName {
			t.Error("inet nodeagent is still there")
		}
	}
	if err := Cleanup(conn); err != nil {
		t.Errorf("a second cleanup, with nothing to remove: %v", err)
	}
}

// A backlog of retired objects (every endpoint map after a restart) is deleted a few per transaction, maps
// before the chains they point at, so no transaction holds thousands of deletions in front of a change.
func TestRetiredObjectsAreDeletedAFewPerTransaction(t *testing.T) {
	tbl := newTable(nft.NewFake()) // deleteRetired only queues; nothing is flushed
	now := time.Now()
	past := now.Add(-2 * retireAfter)
	tbl.retire(retiredChain, "endpoint-x", past)
	for i := range 2*maxDeletionsPerSync + 9 {
		tbl.retire(retiredMap, fmt.Sprintf("map-%d", i), past)
	}
	tbl.retire(retiredMap, "recent", now) // not due yet
	var rounds []int
	for tbl.retiredDue(now) {
		before := len(tbl.retired)
		tbl.deleteRetired(now)
		rounds = append(rounds, before-len(tbl.retired))
		if len(rounds) == 1 && !slices.ContainsFunc(tbl.retired, func(o retiredObject) bool { return o.name == "endpoint-x" }) {
			t.Fatal("the chain was deleted while maps pointing at it may remain")
		}
	}
	if want := []int{maxDeletionsPerSync, maxDeletionsPerSync, 10}; !slices.Equal(rounds, want) {
		t.Errorf("deleted %v per transaction, want %v", rounds, want)
	}
	if len(tbl.retired) != 1 || tbl.retired[0].name != "recent" {
		t.Errorf("left %v, want only the map retired just now", tbl.retired)
	}
}
