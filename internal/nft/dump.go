package nft

import (
	"encoding/binary"
	"fmt"
	"slices"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Reader reads committed tables: nftables.Conn and Fake both are one.
type Reader interface {
	ListChainsOfTableFamily(family nftables.TableFamily) ([]*nftables.Chain, error)
	GetRules(t *nftables.Table, c *nftables.Chain) ([]*nftables.Rule, error)
	GetSets(t *nftables.Table) ([]*nftables.Set, error)
	GetSetElements(s *nftables.Set) ([]nftables.SetElement, error)
}

// Dump writes a table as text: its sets with their elements, then its chains with their rules, each in name
// order, elements sorted. It shows what decides where a packet goes and leaves out what the kernel assigns
// (handles, set IDs), so the dump of a table the kernel holds and of the same table in a Fake are equal.
func Dump(r Reader, table *nftables.Table) (string, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "table %s\n", table.Name)
	sets, err := r.GetSets(table)
	if err != nil {
		return "", fmt.Errorf("listing the sets of %s: %w", table.Name, err)
	}
	slices.SortFunc(sets, func(a, b *nftables.Set) int { return strings.Compare(a.Name, b.Name) })
	for _, s := range sets {
		elems, err := r.GetSetElements(s)
		if err != nil {
			return "", fmt.Errorf("reading set %s: %w", s.Name, err)
		}
		fmt.Fprintf(&b, "\tset %s%s\n", s.Name, setFlags(s))
		lines := make([]string, len(elems))
		for i, e := range elems {
			// google/nftables v0.3.0 reads a verdict map's data type back into KeyType.
			verdicts := s.DataType.Name == nftables.TypeVerdict.Name || s.KeyType.Name == nftables.TypeVerdict.Name
			if s.IsMap && verdicts && e.VerdictData == nil {
				e.VerdictData = decodeVerdict(e.Val)
			}
			lines[i] = renderElement(e)
		}
		slices.Sort(lines)
		for _, l := range lines {
			fmt.Fprintf(&b, "\t\t%s\n", l)
		}
	}
	chains, err := r.ListChainsOfTableFamily(table.Family)
	if err != nil {
		return "", fmt.Errorf("listing chains: %w", err)
	}
	chains = slices.DeleteFunc(chains, func(c *nftables.Chain) bool { return c.Table.Name != table.Name })
	slices.SortFunc(chains, func(a, b *nftables.Chain) int { return strings.Compare(a.Name, b.Name) })
	for _, c := range chains {
		rules, err := r.GetRules(table, c)
		if err != nil {
			return "", fmt.Errorf("reading chain %s: %w", c.Name, err)
		}
		fmt.Fprintf(&b, "\tchain %s%s\n", c.Name, chainHook(c))
		for _, rule := range rules {
			fmt.Fprintf(&b, "\t\t%s\n", RenderRule(rule.Exprs))
		}
	}
	return b.String(), nil
}

func setFlags(s *nftables.Set) string {
	var flags []string
	for _, f := range []struct {
		on   bool
		name string
	}{{s.IsMap, "map"}, {s.Interval, "interval"}, {s.HasTimeout, "timeout"}, {s.Constant, "constant"}} {
		if f.on {
			flags = append(flags, f.name)
		}
	}
	if len(flags) == 0 {
		return ""
	}
	return " (" + strings.Join(flags, ", ") + ")"
}

func chainHook(c *nftables.Chain) string {
	if c.Hooknum == nil {
		return ""
	}
	priority := 0
	if c.Priority != nil {
		priority = int(*c.Priority)
	}
	return fmt.Sprintf(" (type %s hook %d priority %d)", c.Type, *c.Hooknum, priority)
}

// decodeVerdict reads a verdict map's value as google/nftables returns it from the kernel: the nested
// attributes of the verdict, undecoded. Nil when they are not one.
func decodeVerdict(val []byte) *expr.Verdict {
	ad, err := netlink.NewAttributeDecoder(val)
	if err != nil {
		return nil
	}
	ad.ByteOrder = binary.BigEndian
	v := &expr.Verdict{}
	for ad.Next() {
		switch ad.Type() {
		case unix.NFTA_VERDICT_CODE:
			v.Kind = expr.VerdictKind(int32(ad.Uint32()))
		case unix.NFTA_VERDICT_CHAIN:
			v.Chain = ad.String()
		}
	}
	if ad.Err() != nil {
		return nil
	}
	return v
}

// renderElement is an element as "key [end] : value": the value a verdict or bytes in hex.
func renderElement(e nftables.SetElement) string {
	s := fmt.Sprintf("%x", e.Key)
	if e.IntervalEnd {
		s += " end"
	}
	switch {
	case e.VerdictData != nil:
		s += " : " + renderVerdict(e.VerdictData)
	case len(e.Val) > 0:
		s += fmt.Sprintf(" : %x", e.Val)
	}
	return s
}

// RenderRule is a rule as its expressions in order, separated by "; ", in a compact form of nft's
// low-level notation (nft --debug=netlink): registers as r1…, data in hex, sets by name.
func RenderRule(exprs []expr.Any) string {
	parts := make([]string, len(exprs))
	for i, e := range exprs {
		parts[i] = renderExpr(e)
	}
	return strings.Join(parts, "; ")
}

// reg names a register as the kernel dumps it: a 32-bit register that starts a 128-bit one (NFT_REG32_00 is
// 8; four of them make NFT_REG_1) by the 128-bit one's number, so r12 written reads back as r2.
func reg(n uint32) string {
	if n >= 8 && (n-8)%4 == 0 {
		n = (n-8)/4 + 1
	}
	return fmt.Sprintf("r%d", n)
}

var cmpOps = map[expr.CmpOp]string{
	expr.CmpOpEq: "==", expr.CmpOpNeq: "!=", expr.CmpOpLt: "<", expr.CmpOpLte: "<=", expr.CmpOpGt: ">", expr.CmpOpGte: ">=",
}

var payloadBases = map[expr.PayloadBase]string{
	expr.PayloadBaseLLHeader: "link", expr.PayloadBaseNetworkHeader: "network", expr.PayloadBaseTransportHeader: "transport",
}

func renderExpr(e expr.Any) string {
	switch e := e.(type) {
	case *expr.Meta:
		if e.SourceRegister {
			return fmt.Sprintf("meta set %d %s", e.Key, reg(e.Register))
		}
		return fmt.Sprintf("meta load %d > %s", e.Key, reg(e.Register))
	case *expr.Payload:
		return fmt.Sprintf("payload load %s+%d/%d > %s", payloadBases[e.Base], e.Offset, e.Len, reg(e.DestRegister))
	case *expr.Cmp:
		return fmt.Sprintf("cmp %s %s %x", reg(e.Register), cmpOps[e.Op], e.Data)
	case *expr.Bitwise:
		return fmt.Sprintf("bitwise %s & %x ^ %x > %s", reg(e.SourceRegister), e.Mask, e.Xor, reg(e.DestRegister))
	case *expr.Byteorder:
		return fmt.Sprintf("byteorder %s op %d len %d size %d > %s", reg(e.SourceRegister), e.Op, e.Len, e.Size, reg(e.DestRegister))
	case *expr.Lookup:
		not := ""
		if e.Invert {
			not = "not "
		}
		if e.IsDestRegSet {
			return fmt.Sprintf("lookup %s %s@%s > %s", reg(e.SourceRegister), not, e.SetName, reg(e.DestRegister))
		}
		return fmt.Sprintf("lookup %s %s@%s", reg(e.SourceRegister), not, e.SetName)
	case *expr.Dynset:
		return fmt.Sprintf("dynset op %d %s @%s timeout %s", e.Operation, reg(e.SrcRegKey), e.SetName, e.Timeout)
	case *expr.Ct:
		return fmt.Sprintf("ct load %d > %s", e.Key, reg(e.Register))
	case *expr.Fib:
		return fmt.Sprintf("fib saddr=%t daddr=%t addrtype=%t > %s", e.FlagSADDR, e.FlagDADDR, e.ResultADDRTYPE, reg(e.Register))
	case *expr.Immediate:
		return fmt.Sprintf("immediate %x > %s", e.Data, reg(e.Register))
	case *expr.Numgen:
		return fmt.Sprintf("numgen type %d mod %d offset %d > %s", e.Type, e.Modulus, e.Offset, reg(e.Register))
	case *expr.NAT:
		kind := "snat"
		if e.Type == expr.NATTypeDestNAT {
			kind = "dnat"
		}
		return fmt.Sprintf("%s family %d addr %s port %s", kind, e.Family, reg(e.RegAddrMin), reg(e.RegProtoMin))
	case *expr.Masq:
		return fmt.Sprintf("masquerade random=%t fully-random=%t", e.Random, e.FullyRandom)
	case *expr.Reject:
		return fmt.Sprintf("reject type %d code %d", e.Type, e.Code)
	case *expr.Counter:
		return "counter"
	case *expr.Verdict:
		return renderVerdict(e)
	}
	return fmt.Sprintf("%T", e)
}

func renderVerdict(v *expr.Verdict) string {
	switch v.Kind {
	case expr.VerdictJump:
		return "jump " + v.Chain
	case expr.VerdictGoto:
		return "goto " + v.Chain
	case expr.VerdictReturn:
		return "return"
	case expr.VerdictAccept:
		return "accept"
	case expr.VerdictDrop:
		return "drop"
	}
	return fmt.Sprintf("verdict %d", v.Kind)
}
