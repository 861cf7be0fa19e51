// Package proxy owns the node's Service VIPs in nftables, as kube-proxy's nftables mode does: one table,
// "inet nodeagent", that only this package writes, changed in one netlink transaction per sync through
// github.com/google/nftables. It never touches another table; Cleanup removes its own.
package proxy

import (
	"fmt"
	"slices"

	"github.com/google/nftables"
)

// TableName is the agent's table, in the inet family so one table serves IPv4 and IPv6.
const TableName = "nodeagent"

// Cleanup removes the agent's table and everything in it (kube-proxy's --cleanup); a table that is not
// there is not an error. Other tables are left alone.
func Cleanup(conn *nftables.Conn) error {
	tables, err := conn.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		return fmt.Errorf("listing inet tables: %w", err)
	}
	if !slices.ContainsFunc(tables, func(t *nftables.Table) bool { return t.Name == TableName }) {
		return nil
	}
	conn.DelTable(&nftables.Table{Name: TableName, Family: nftables.TableFamilyINet})
	if err := conn.Flush(); err != nil {
		return fmt.Errorf("deleting table inet %s: %w", TableName, err)
	}
	return nil
}
