package proxy

import (
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// The expressions below are the few shapes of nftables rule this package writes, each named after the nft
// syntax it stands for. Loads go to register 1 (NFT_REG_1, which overlaps the 32-bit registers 8-11), and a
// concatenation puts each field in the next 32-bit register, padded to four bytes, as nft does.
const (
	reg1     = 1 // NFT_REG_1: 16 bytes
	reg32_00 = 8 // the 32-bit register that starts reg1
	reg32_01 = 9 // the 32-bit register right after the first four bytes of reg1
)

// masqueradeBit is the packet mark that asks nat-postrouting to masquerade, kube-proxy's 0x4000.
const masqueradeBit = 0x4000

// ipFamily is what a rule needs to know of an IP version: the nfproto that selects its packets in the inet
// table, where its addresses sit in the network header, and the suffix that keeps its chains and sets apart
// from the other family's (none for IPv4, so an IPv4-only table is named as before dual-stack).
type ipFamily struct {
	name             string // "IPv4" or "IPv6", as Kubernetes spells them
	nfproto          byte
	addrLen          uint32
	saddrAt, daddrAt uint32
	addrType         nftables.SetDatatype
	suffix           string
}

var (
	familyIPv4 = ipFamily{name: "IPv4", nfproto: unix.NFPROTO_IPV4, addrLen: 4, saddrAt: 12, daddrAt: 16, addrType: nftables.TypeIPAddr}
	familyIPv6 = ipFamily{name: "IPv6", nfproto: unix.NFPROTO_IPV6, addrLen: 16, saddrAt: 8, daddrAt: 24, addrType: nftables.TypeIP6Addr, suffix: "-ipv6"}
	families   = []ipFamily{familyIPv4, familyIPv6}
)

func familyOf(a netip.Addr) ipFamily {
	if a.Is4() {
		return familyIPv4
	}
	return familyIPv6
}

// afterAddr is the 32-bit register n places after an address loaded into reg1: where a concatenation's
// next fields go.
func (f ipFamily) afterAddr(n uint32) uint32 { return reg32_00 + f.addrLen/4 + n }

// endpointValues is the type of an endpoint map's values: the family's address . inet_service.
func (f ipFamily) endpointValues() nftables.SetDatatype {
	t, _ := nftables.ConcatSetType(f.addrType, nftables.TypeInetService)
	return t
}

// only is "meta nfproto ipv4|ipv6": the table is inet, so a rule that reads one family's headers must skip
// the other's packets.
func (f ipFamily) only() []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: reg1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{f.nfproto}},
	}
}

// loadAddr is "ip|ip6 saddr|daddr" into register reg.
func (f ipFamily) loadAddr(source bool, reg uint32) expr.Any {
	offset := f.daddrAt
	if source {
		offset = f.saddrAt
	}
	return &expr.Payload{DestRegister: reg, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: f.addrLen}
}

// daddrProtoPort is "ip|ip6 daddr . meta l4proto . th dport", the key of the service maps.
func (f ipFamily) daddrProtoPort() []expr.Any {
	return []expr.Any{
		f.loadAddr(false, reg1),
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: f.afterAddr(0)},
		&expr.Payload{DestRegister: f.afterAddr(1), Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
	}
}

// protoPort is "meta l4proto . th dport", the key of the NodePort maps.
func protoPort() []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg1},
		&expr.Payload{DestRegister: reg32_01, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
	}
}

// inSet is a lookup of register 1 in a named set.
func inSet(set *nftables.Set) expr.Any {
	return &expr.Lookup{SourceRegister: reg1, SetName: set.Name, SetID: set.ID}
}

// vmap is "... vmap @set": the verdict found in the map for register 1.
func vmap(set *nftables.Set) expr.Any {
	return &expr.Lookup{SourceRegister: reg1, SetName: set.Name, SetID: set.ID, IsDestRegSet: true, DestRegister: 0}
}

// addrNotIn is "ip saddr|daddr != prefix".
func addrNotIn(source bool, prefix netip.Prefix) []expr.Any {
	return addrMatch(source, prefix, expr.CmpOpNeq)
}

// addrIn is "ip saddr|daddr <prefix>".
func addrIn(source bool, prefix netip.Prefix) []expr.Any {
	return addrMatch(source, prefix, expr.CmpOpEq)
}

func addrMatch(source bool, prefix netip.Prefix, op expr.CmpOp) []expr.Any {
	f := familyOf(prefix.Addr())
	return append(f.only(),
		f.loadAddr(source, reg1),
		&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: f.addrLen, Mask: prefixMask(prefix), Xor: make([]byte, f.addrLen)},
		&expr.Cmp{Op: op, Register: reg1, Data: prefix.Masked().Addr().AsSlice()},
	)
}

// prefixMask is the network mask of prefix, as many bytes as its addresses.
func prefixMask(prefix netip.Prefix) []byte {
	mask := make([]byte, prefix.Addr().BitLen()/8)
	for i := range prefix.Bits() {
		mask[i/8] |= 0x80 >> (i % 8)
	}
	return mask
}

// addrTypeLocal is "fib saddr|daddr type local".
func addrTypeLocal(source bool) []expr.Any {
	return []expr.Any{
		&expr.Fib{Register: reg1, FlagSADDR: source, FlagDADDR: !source, ResultADDRTYPE: true},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: binaryutil.NativeEndian.PutUint32(unix.RTN_LOCAL)},
	}
}

// ctStateNew is "ct state new".
func ctStateNew() []expr.Any {
	return []expr.Any{
		&expr.Ct{Key: expr.CtKeySTATE, Register: reg1},
		&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(expr.CtStateBitNEW), Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: reg1, Data: make([]byte, 4)},
	}
}

// setMasqueradeMark is "meta mark set meta mark | 0x4000".
func setMasqueradeMark() []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyMARK, Register: reg1},
		&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(^uint32(masqueradeBit)), Xor: binaryutil.NativeEndian.PutUint32(masqueradeBit)},
		&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: reg1},
	}
}

// unlessMasqueradeMarkReturn is "meta mark & 0x4000 == 0 return".
func unlessMasqueradeMarkReturn() []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyMARK, Register: reg1},
		&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(masqueradeBit), Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: make([]byte, 4)},
		&expr.Verdict{Kind: expr.VerdictReturn},
	}
}

// clearMasqueradeMark is "meta mark set meta mark ^ 0x4000", so a packet that leaves a pod network namespace
// and comes back is not masqueraded twice.
func clearMasqueradeMark() []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyMARK, Register: reg1},
		&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(^uint32(0)), Xor: binaryutil.NativeEndian.PutUint32(masqueradeBit)},
		&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: reg1},
	}
}

// dnatTo is "dnat ip|ip6 to <addr>:<port>".
func dnatTo(addr netip.Addr, port uint16) []expr.Any {
	f := familyOf(addr)
	return []expr.Any{
		&expr.Immediate{Register: reg1, Data: addr.AsSlice()},
		&expr.Immediate{Register: f.afterAddr(0), Data: binaryutil.BigEndian.PutUint16(port)},
		&expr.NAT{Type: expr.NATTypeDestNAT, Family: uint32(f.nfproto), RegAddrMin: reg1, RegProtoMin: f.afterAddr(0)},
	}
}

func jump(chain string) expr.Any { return &expr.Verdict{Kind: expr.VerdictJump, Chain: chain} }
func goTo(chain string) expr.Any { return &expr.Verdict{Kind: expr.VerdictGoto, Chain: chain} }

// Keys of set elements, laid out as the registers above hold them: every field of a concatenation padded
// to four bytes.
func protoKey(p uint8) []byte { return []byte{p, 0, 0, 0} }
func portKey(p uint16) []byte { return []byte{byte(p >> 8), byte(p), 0, 0} }

func addrProtoPortKey(addr netip.Addr, proto uint8, port uint16) []byte {
	return append(append(addr.AsSlice(), protoKey(proto)...), portKey(port)...)
}

func protoPortKey(proto uint8, port uint16) []byte { return append(protoKey(proto), portKey(port)...) }
