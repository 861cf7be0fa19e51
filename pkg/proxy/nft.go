package proxy

import (
	"encoding/binary"
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
	reg32_01 = 9 // the 32-bit register right after the first four bytes of reg1
	reg32_02 = 10
)

// masqueradeBit is the packet mark that asks nat-postrouting to masquerade, kube-proxy's 0x4000.
const masqueradeBit = 0x4000

// onlyIPv4 is "meta nfproto ipv4": the table is inet, so a rule that reads IPv4 headers must skip IPv6 packets.
func onlyIPv4() []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: reg1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{unix.NFPROTO_IPV4}},
	}
}

// loadIPv4Addr is "ip saddr" or "ip daddr" into register reg.
func loadIPv4Addr(source bool, reg uint32) expr.Any {
	offset := uint32(16) // daddr
	if source {
		offset = 12
	}
	return &expr.Payload{DestRegister: reg, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: 4}
}

// daddrProtoPort is "ip daddr . meta l4proto . th dport", the key of the service maps.
func daddrProtoPort() []expr.Any {
	return []expr.Any{
		loadIPv4Addr(false, reg1),
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg32_01},
		&expr.Payload{DestRegister: reg32_02, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
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
	mask := net4Mask(prefix.Bits())
	return append(onlyIPv4(),
		loadIPv4Addr(source, reg1),
		&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4, Mask: mask, Xor: make([]byte, 4)},
		&expr.Cmp{Op: op, Register: reg1, Data: prefix.Masked().Addr().AsSlice()},
	)
}

func net4Mask(bits int) []byte {
	m := binary.BigEndian.AppendUint32(nil, ^uint32(0)<<(32-bits))
	if bits == 0 {
		return make([]byte, 4)
	}
	return m
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

// dnatTo is "dnat ip to <addr>:<port>".
func dnatTo(addr netip.Addr, port uint16) []expr.Any {
	return []expr.Any{
		&expr.Immediate{Register: reg1, Data: addr.AsSlice()},
		&expr.Immediate{Register: reg32_01, Data: binaryutil.BigEndian.PutUint16(port)},
		&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: reg1, RegProtoMin: reg32_01},
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
