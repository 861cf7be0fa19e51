package proxy

import (
	"fmt"
	"maps"
	"net/netip"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
)

// table writes serviceRules into the kernel. It remembers what it wrote per Service, so a change to one
// Service becomes one transaction with only that Service's chains and elements in it. It is not safe for
// concurrent use: the Proxier's sync loop owns it.
type table struct {
	conn  Conn
	table *nftables.Table
	sets  map[string]*nftables.Set
	// nodePortIPs are the node addresses that accept NodePorts.
	nodePortIPs []netip.Addr

	applied map[string]*serviceRules // by "namespace/name"
	hairpin addrCounts               // endpoint address → how many Services' chains send to it

	// endpointMaps are the names of the endpoint maps each chain's rules use now; mapSeq numbers new ones.
	endpointMaps map[string][]string
	mapSeq       uint64
	// retired are objects that no rule or element reaches any more but that a packet in flight during the
	// last transaction may still use; a later transaction deletes them (see addRules).
	retired []retiredObject
	// reusable are, during a full sync, the names of the endpoint maps found in the table by what they
	// hold (contentKey), which a rule with the same endpoints takes over instead of a new map.
	reusable map[string][]string
}

// retiredKind orders the deletion of retired objects: endpoint maps first (their verdicts point at endpoint
// chains), then the chains (their rules use affinity sets), then the sets.
type retiredKind int

const (
	retiredMap retiredKind = iota
	retiredChain
	retiredSet
)

type retiredObject struct {
	kind  retiredKind
	name  string
	since time.Time
}

// endpointMapPrefix starts the names of endpoint maps, followed by a sequence number in base 36. The names
// are short on purpose: the kernel finds a set by walking the table's list of sets and taking the length
// of each name (nla_strcmp), and at 10,000 Services that walk was most of a full sync's time (perf: strlen
// 35% with names like "endpoints-service-<namespace>/<name>/tcp/<port>-<n>").
const endpointMapPrefix = "ep-"

// retireAfter is how long an unused endpoint map stays: far longer than any packet takes to go through the
// chain that was replaced, however busy the machine.
const retireAfter = time.Second

func newTable(conn Conn) *table {
	t := &nftables.Table{Name: TableName, Family: nftables.TableFamilyINet}
	return &table{conn: conn, table: t, sets: baseSets(t),
		applied: map[string]*serviceRules{}, hairpin: newAddrCounts(), endpointMaps: map[string][]string{}}
}

// fullSync makes the table exactly what services describe, whatever it held before (an earlier run of the
// agent, a partial sync that failed, someone's edit): one transaction that rewrites every chain and map in
// place, so there is no moment when a VIP stops answering.
func (t *table) fullSync(services map[string]*serviceRules) error {
	existingChains, existingSets, existingMaps, err := t.listOwn()
	if err != nil {
		return err
	}
	// A rule whose endpoints are those of a map found in the table (after a restart, nearly all) takes
	// that map over; the other maps there now are retired, whoever wrote them. Creating maps is what makes
	// a full sync slow: the kernel finds a table's sets by walking a list, so each new map costs more with
	// every map the table has.
	if t.reusable, err = t.readEndpointMaps(existingMaps); err != nil {
		return err
	}
	defer func() { t.reusable = nil }()
	t.endpointMaps = map[string][]string{}
	t.retired = nil
	now := time.Now()
	c := t.conn
	c.AddTable(t.table)
	for _, name := range slices.Sorted(maps.Keys(t.sets)) {
		if err := c.AddSet(t.sets[name], nil); err != nil {
			return fmt.Errorf("set %s: %w", name, err)
		}
		c.FlushSet(t.sets[name])
	}
	bases := baseChains(t.sets)
	base := map[string]bool{}
	for _, bc := range bases {
		base[bc.name] = true
		ch := c.AddChain(&nftables.Chain{Name: bc.name, Table: t.table, Type: bc.typ, Hooknum: bc.hook, Priority: bc.priority})
		c.FlushChain(ch)
		for _, r := range bc.rules {
			c.AddRule(&nftables.Rule{Table: t.table, Chain: ch, Exprs: r})
		}
	}

	desiredChains := map[string][]rule{}
	desiredSets := map[string]bool{}
	hairpin := newAddrCounts()
	var elements []element
	for _, key := range slices.Sorted(maps.Keys(services)) {
		sr := services[key]
		for _, c := range sr.chains {
			desiredChains[c.name] = c.rules
		}
		for _, s := range sr.sets {
			desiredSets[s.name] = true
			if err := t.addAffinitySet(s); err != nil {
				return err
			}
		}
		for a := range sr.hairpinAddrs {
			hairpin.add(a, 1)
		}
		elements = append(elements, sr.elements...)
	}
	// Every chain exists before any rule or element points at it.
	for name := range desiredChains {
		if !existingChains[name] {
			c.AddChain(&nftables.Chain{Name: name, Table: t.table})
		}
	}
	for name, rules := range desiredChains {
		ch := &nftables.Chain{Name: name, Table: t.table}
		if existingChains[name] {
			c.FlushChain(ch)
		}
		if err := t.addRules(ch, rules); err != nil {
			return err
		}
	}
	if err := t.addElements(elements); err != nil {
		return err
	}
	for _, content := range slices.Sorted(maps.Keys(t.reusable)) {
		for _, name := range t.reusable[content] {
			t.retire(retiredMap, name, now)
		}
	}
	if err := t.setHairpin(hairpin.addrs(), nil); err != nil {
		return err
	}
	if err := t.setNodePortIPs(); err != nil {
		return err
	}
	var stale []string
	for name := range existingChains {
		if !base[name] && desiredChains[name] == nil {
			stale = append(stale, name)
		}
	}
	t.deleteChains(stale, now)
	for name := range existingSets {
		if !desiredSets[name] {
			t.retire(retiredSet, name, now)
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("full sync of table inet %s: %w", TableName, err)
	}
	t.applied, t.hairpin = services, hairpin
	return nil
}

// listOwn returns the names of the chains, affinity sets and endpoint maps the table has now; none when it
// does not exist. mapSeq moves past the numbers of the endpoint maps found, so new names never collide.
func (t *table) listOwn() (chains, affinitySets map[string]bool, endpointMaps []*nftables.Set, err error) {
	chains, affinitySets = map[string]bool{}, map[string]bool{}
	tables, err := t.conn.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("listing inet tables: %w", err)
	}
	if !slices.ContainsFunc(tables, func(tb *nftables.Table) bool { return tb.Name == TableName }) {
		return chains, affinitySets, nil, nil
	}
	all, err := t.conn.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("listing chains: %w", err)
	}
	for _, ch := range all {
		if ch.Table.Name == TableName {
			chains[ch.Name] = true
		}
	}
	sets, err := t.conn.GetSets(t.table)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("listing sets: %w", err)
	}
	for _, s := range sets {
		switch {
		case t.sets[s.Name] != nil:
		case strings.HasPrefix(s.Name, "affinity-"):
			affinitySets[s.Name] = true
		default: // an endpoint map, this version's or an earlier one's ("endpoints-<chain>-<n>")
			endpointMaps = append(endpointMaps, s)
			if n, err := strconv.ParseUint(strings.TrimPrefix(s.Name, endpointMapPrefix), 36, 64); err == nil && n >= t.mapSeq {
				t.mapSeq = n + 1
			}
		}
	}
	return chains, affinitySets, endpointMaps, nil
}

// readEndpointMaps reads the elements of the endpoint maps given and returns their names by what they hold.
// Only interval maps of addresses can be taken over (see takeReusable); the others are listed under "", to
// be retired: verdict maps, and the constant or hash maps of earlier versions of the agent.
func (t *table) readEndpointMaps(sets []*nftables.Set) (map[string][]string, error) {
	found := map[string][]string{}
	for _, set := range sets {
		content := ""
		if set.Interval && !set.Constant {
			elems, err := t.conn.GetSetElements(set)
			if err != nil {
				return nil, fmt.Errorf("reading endpoint map %s: %w", set.Name, err)
			}
			content = contentKey(elems)
		}
		found[content] = append(found[content], set.Name)
	}
	return found, nil
}

// takeReusable returns the name of a found map that holds exactly the rule's endpoints, and takes it off
// the list. Any such map will do, whichever rule used it before: it holds the same. Only maps of addresses
// are taken: the elements of verdict maps read back in another form, and a verdict map is rewritten with
// its rule anyway.
func (t *table) takeReusable(r rule, elems []nftables.SetElement) (string, bool) {
	if !r.hasEndpointMap() || r.verdictValues() || len(t.reusable) == 0 {
		return "", false
	}
	content := contentKey(elems)
	names := t.reusable[content]
	if len(names) == 0 {
		return "", false
	}
	t.reusable[content] = names[1:]
	return names[0], true
}

// contentKey is the same string for the same elements in any order (a dump lists them in the kernel's).
func contentKey(elems []nftables.SetElement) string {
	parts := make([]string, len(elems))
	for i, e := range elems {
		end := "s"
		if e.IntervalEnd {
			end = "e"
		}
		parts[i] = fmt.Sprintf("%x/%s/%x", e.Key, end, e.Val)
	}
	slices.Sort(parts)
	return strings.Join(parts, ",")
}

// syncServices applies the new rules of the Services in changed (nil for a Service that is gone) against
// what was applied for them before, in one transaction holding only the difference.
func (t *table) syncServices(changed map[string]*serviceRules) error {
	c := t.conn
	var addElems, delElems []element
	var newChains, flushChains, goneChains []string
	newRules := map[string][]rule{}
	var newSets []affinitySet
	var goneSets []string
	var hairpinAdd, hairpinDel []netip.Addr
	var mapUpdates []endpointMapUpdate
	// Changes to t.hairpin's counts, applied once the transaction is written: a copy of the whole map
	// (an entry per endpoint of every Service) cost more than the rest of a partial sync at 10,000 Services.
	hairpinDelta := map[netip.Addr]int{}
	hairpinCount := func(a netip.Addr) int { return t.hairpin.get(a) + hairpinDelta[a] }
	for _, key := range slices.Sorted(maps.Keys(changed)) {
		old, cur := t.applied[key], changed[key]
		if old == nil {
			old = &serviceRules{}
		}
		if cur == nil {
			cur = &serviceRules{}
		}
		oldElems := elementIndex(old.elements)
		curElems := elementIndex(cur.elements)
		for k, e := range oldElems {
			if n, ok := curElems[k]; !ok || !reflect.DeepEqual(n.verdict, e.verdict) {
				delElems = append(delElems, e)
			}
		}
		for k, e := range curElems {
			if o, ok := oldElems[k]; !ok || !reflect.DeepEqual(o.verdict, e.verdict) {
				addElems = append(addElems, e)
			}
		}
		for _, c := range cur.chains {
			name, rules := c.name, c.rules
			oldRules, existed := old.rulesOf(name)
			switch {
			case !existed:
				newChains = append(newChains, name)
				newRules[name] = rules
			case !reflect.DeepEqual(oldRules, rules):
				if updates, ok := t.endpointMapUpdates(name, oldRules, rules); ok {
					mapUpdates = append(mapUpdates, updates...)
					continue
				}
				flushChains = append(flushChains, name)
				newRules[name] = rules
			}
		}
		for _, c := range old.chains {
			if _, ok := cur.rulesOf(c.name); !ok {
				goneChains = append(goneChains, c.name)
			}
		}
		oldSets := map[string]bool{}
		for _, s := range old.sets {
			oldSets[s.name] = true
		}
		for _, s := range cur.sets {
			if !oldSets[s.name] {
				newSets = append(newSets, s)
			}
			delete(oldSets, s.name)
		}
		for name := range oldSets {
			goneSets = append(goneSets, name)
		}
		for a := range old.hairpinAddrs {
			if hairpinDelta[a]--; hairpinCount(a) == 0 {
				hairpinDel = append(hairpinDel, a)
			}
		}
		for a := range cur.hairpinAddrs {
			if hairpinDelta[a]++; hairpinCount(a) == 1 {
				hairpinAdd = append(hairpinAdd, a)
			}
		}
	}
	// An address both removed and added by two Services in the same sync stays.
	hairpinAdd, hairpinDel = withoutCommon(hairpinAdd, hairpinDel)

	if err := t.deleteElements(delElems); err != nil {
		return err
	}
	if err := t.setHairpin(hairpinAdd, hairpinDel); err != nil {
		return err
	}
	for _, u := range mapUpdates {
		if err := u.apply(t.conn); err != nil {
			return err
		}
	}
	for _, s := range newSets {
		t.unretire(retiredSet, s.name)
		if err := t.addAffinitySet(s); err != nil {
			return err
		}
	}
	now := time.Now()
	for _, name := range newChains {
		c.AddChain(&nftables.Chain{Name: name, Table: t.table})
		if t.unretire(retiredChain, name) { // back before it was deleted: it still has its old rules
			flushChains = append(flushChains, name)
		}
	}
	for _, name := range flushChains {
		c.FlushChain(&nftables.Chain{Name: name, Table: t.table})
		t.retireMapsOf(name, now)
	}
	for _, name := range slices.Sorted(maps.Keys(newRules)) {
		if err := t.addRules(&nftables.Chain{Name: name, Table: t.table}, newRules[name]); err != nil {
			return err
		}
	}
	if err := t.addElements(addElems); err != nil {
		return err
	}
	t.deleteChains(goneChains, now)
	for _, name := range goneSets {
		t.retire(retiredSet, name, now)
	}
	t.deleteRetired(now)
	if err := c.Flush(); err != nil {
		return fmt.Errorf("syncing %d services in table inet %s: %w", len(changed), TableName, err)
	}
	for key, sr := range changed {
		if sr == nil {
			delete(t.applied, key)
		} else {
			t.applied[key] = sr
		}
	}
	for a, d := range hairpinDelta {
		t.hairpin.add(a, d)
	}
	return nil
}

// deleteChains deletes chains that nothing reaches any more, with their endpoint maps retired. Endpoint
// chains are retired too, with their rules: a retired endpoint map may still send a packet there. The others
// are emptied first, so that none is still the target of another one's rule, then deleted.
func (t *table) deleteChains(names []string, now time.Time) {
	var direct []string
	for _, name := range names {
		t.retireMapsOf(name, now)
		if strings.HasPrefix(name, endpointChainPrefix) {
			t.retire(retiredChain, name, now)
			continue
		}
		direct = append(direct, name)
		t.conn.FlushChain(&nftables.Chain{Name: name, Table: t.table})
	}
	for _, name := range direct {
		t.conn.DelChain(&nftables.Chain{Name: name, Table: t.table})
	}
}

func (t *table) addAffinitySet(s affinitySet) error {
	set := &nftables.Set{Table: t.table, Name: s.name, KeyType: s.addrType, HasTimeout: true, Dynamic: true}
	if err := t.conn.AddSet(set, nil); err != nil {
		return fmt.Errorf("affinity set %s: %w", s.name, err)
	}
	return nil
}

// addRules appends rules to a chain; a rule's endpoint map is created right before it.
//
// The endpoint map is a named map with a new name each time, not an inline (anonymous) one as nft would
// write, and the map it replaces is deleted only by a later transaction (retired). A packet that entered the
// old rule just before the transaction committed still looks its endpoint up after the commit; if the old
// map went in the same transaction, that lookup misses and the connection leaves un-NATed, to the VIP itself
// (measured: about one new connection in a few hundred endpoint changes failed with "no route to host").
func (t *table) addRules(ch *nftables.Chain, rules []rule) error {
	for _, r := range rules {
		exprs := r.exprs
		elems := r.endpointMapElements()
		if name, ok := t.takeReusable(r, elems); ok {
			t.endpointMaps[ch.Name] = append(t.endpointMaps[ch.Name], name)
			exprs = withEndpointMap(exprs, &nftables.Set{Table: t.table, Name: name})
		} else if r.hasEndpointMap() {
			set := t.endpointMap(endpointMapPrefix+strconv.FormatUint(t.mapSeq, 36), r.mapValues)
			t.mapSeq++
			if err := t.conn.AddSet(set, nil); err != nil {
				return fmt.Errorf("endpoint map for chain %s: %w", ch.Name, err)
			}
			if err := inChunks(t.conn.SetAddElements, set, elems); err != nil {
				return fmt.Errorf("endpoint map for chain %s: %w", ch.Name, err)
			}
			t.endpointMaps[ch.Name] = append(t.endpointMaps[ch.Name], set.Name)
			exprs = withEndpointMap(exprs, set)
		}
		t.conn.AddRule(&nftables.Rule{Table: t.table, Chain: ch, Exprs: exprs})
	}
	return nil
}

// endpointMapUpdate replaces the elements of one endpoint map, in place. All of them: the kernel refuses an
// interval that overlaps one still in the map, and when the number of endpoints changes every boundary
// moves, so the map is emptied and filled in the same transaction, as nft does.
type endpointMapUpdate struct {
	set   *nftables.Set
	elems []nftables.SetElement
}

func (u endpointMapUpdate) apply(c Conn) error {
	c.FlushSet(u.set)
	if err := inChunks(c.SetAddElements, u.set, u.elems); err != nil {
		return fmt.Errorf("endpoint map %s: %w", u.set.Name, err)
	}
	return nil
}

// endpointMapUpdates returns, when a chain's new rules differ from its old ones only in the endpoints their
// endpoint maps hold (any change of endpoints, but to or from none, of a Service without affinity: see
// endpointDraws), the element changes that turn the chain's maps into the new ones; otherwise false, and
// the chain is rewritten.
//
// Changing only elements of maps of addresses keeps the transaction small at any number of Services: a new
// rule that jumps or NATs makes the kernel re-validate every chain of the table at commit (about 12 ms at
// 10,000 Services), and a new map is created by walking the table's list of thousands of sets. The change is
// still atomic for packets: a lookup sees the map as it was before the transaction or as it is after.
func (t *table) endpointMapUpdates(chain string, oldRules, newRules []rule) ([]endpointMapUpdate, bool) {
	if len(oldRules) != len(newRules) {
		return nil, false
	}
	names := t.endpointMaps[chain]
	var updates []endpointMapUpdate
	for i := range oldRules {
		o, n := oldRules[i], newRules[i]
		if !reflect.DeepEqual(o.exprs, n.exprs) || o.hasEndpointMap() != n.hasEndpointMap() {
			return nil, false
		}
		if !o.hasEndpointMap() {
			continue
		}
		if o.verdictValues() || o.mapValues != n.mapValues || len(updates) == len(names) {
			return nil, false
		}
		updates = append(updates, endpointMapUpdate{set: t.endpointMap(names[len(updates)], n.mapValues), elems: n.endpointMapElements()})
	}
	return updates, true
}

// endpointMap describes a map of a chain's endpoints: intervals of numgen draws → address . port, or
// numgen value → verdict (affinity).
func (t *table) endpointMap(name string, values nftables.SetDatatype) *nftables.Set {
	if values == nftables.TypeVerdict {
		return &nftables.Set{Table: t.table, Name: name,
			IsMap: true, KeyType: nftables.TypeInteger, KeyByteOrder: binaryutil.NativeEndian, DataType: values}
	}
	return &nftables.Set{Table: t.table, Name: name, Interval: true,
		IsMap: true, KeyType: nftables.TypeInteger, KeyByteOrder: binaryutil.BigEndian, DataType: values}
}

// withEndpointMap returns a copy of a rule's expressions whose unnamed lookup names set.
func withEndpointMap(exprs []expr.Any, set *nftables.Set) []expr.Any {
	exprs = slices.Clone(exprs)
	for i, e := range exprs {
		if l, ok := e.(*expr.Lookup); ok && l.SetName == "" {
			named := *l
			named.SetName, named.SetID = set.Name, set.ID
			exprs[i] = &named
		}
	}
	return exprs
}

func (t *table) retire(kind retiredKind, name string, now time.Time) {
	t.retired = append(t.retired, retiredObject{kind: kind, name: name, since: now})
}

// unretire takes an object that is wanted again off the retired list; it reports whether it was there.
func (t *table) unretire(kind retiredKind, name string) bool {
	n := len(t.retired)
	t.retired = slices.DeleteFunc(t.retired, func(o retiredObject) bool { return o.kind == kind && o.name == name })
	return len(t.retired) < n
}

// retireMapsOf retires the endpoint maps of a chain that is being rewritten or deleted.
func (t *table) retireMapsOf(chain string, now time.Time) {
	for _, name := range t.endpointMaps[chain] {
		t.retire(retiredMap, name, now)
	}
	delete(t.endpointMaps, chain)
}

// maxDeletionsPerSync bounds the retired objects one transaction deletes. After a restart with 10,000
// Services every endpoint map is retired at once, and deleting them all in one transaction took seconds, in
// front of the next change; a few at a time, each transaction stays short and the rest follow soon after.
const maxDeletionsPerSync = 64

// deleteRetired adds to the transaction the deletion of at most maxDeletionsPerSync objects retired long
// enough ago, in the order of their kinds (the maps that point at chains go before the chains).
func (t *table) deleteRetired(now time.Time) {
	var due []retiredObject
	kept := t.retired[:0]
	for _, o := range t.retired {
		if now.Sub(o.since) < retireAfter {
			kept = append(kept, o)
		} else {
			due = append(due, o)
		}
	}
	slices.SortStableFunc(due, func(a, b retiredObject) int { return int(a.kind) - int(b.kind) })
	if len(due) > maxDeletionsPerSync {
		kept = append(kept, due[maxDeletionsPerSync:]...) // still due: the next sync takes them
		due = due[:maxDeletionsPerSync]
	}
	t.retired = kept
	for _, o := range due {
		if o.kind == retiredChain {
			t.conn.FlushChain(&nftables.Chain{Name: o.name, Table: t.table})
		}
	}
	for _, o := range due {
		switch o.kind {
		case retiredMap, retiredSet:
			t.conn.DelSet(&nftables.Set{Table: t.table, Name: o.name})
		case retiredChain:
			t.conn.DelChain(&nftables.Chain{Name: o.name, Table: t.table})
		}
	}
}

// hasRetired reports whether maps wait for deletion, so the caller syncs again later.
func (t *table) hasRetired() bool { return len(t.retired) > 0 }

// retiredDue reports whether retired objects can be deleted now, so the caller syncs again soon.
func (t *table) retiredDue(now time.Time) bool {
	return slices.ContainsFunc(t.retired, func(o retiredObject) bool { return now.Sub(o.since) >= retireAfter })
}

func (t *table) addElements(elems []element) error {
	return t.forEachSet(elems, t.conn.SetAddElements)
}

func (t *table) deleteElements(elems []element) error {
	return t.forEachSet(elems, t.conn.SetDeleteElements)
}

// forEachSet groups elements by set, so each set costs as few netlink messages as it can.
func (t *table) forEachSet(elems []element, op elementsOp) error {
	// Each set's list is allocated at its size: the hairpin set alone has an element per endpoint.
	sizes := map[string]int{}
	for _, e := range elems {
		sizes[e.set]++
	}
	bySet := make(map[string][]nftables.SetElement, len(sizes))
	for name, n := range sizes {
		bySet[name] = make([]nftables.SetElement, 0, n)
	}
	for _, e := range elems {
		bySet[e.set] = append(bySet[e.set], nftables.SetElement{Key: e.key, VerdictData: e.verdict})
	}
	for _, name := range slices.Sorted(maps.Keys(bySet)) {
		if err := inChunks(op, t.sets[name], bySet[name]); err != nil {
			return fmt.Errorf("elements of %s: %w", name, err)
		}
	}
	return nil
}

// elementsOp adds or deletes elements of a set: nftables.Conn's SetAddElements or SetDeleteElements.
type elementsOp func(*nftables.Set, []nftables.SetElement) error

// maxElementsPerMessage keeps each message's element list well under the 64 KiB that a netlink attribute's
// 16-bit length can describe: google/nftables puts all the elements of one call in one attribute, and a
// longer one wraps its length, so the kernel reads garbage (seen as ENOENT from ~1,600 Services on). An
// element is at most ~300 bytes (a verdict names a chain).
const maxElementsPerMessage = 128

// inChunks applies op to elems, maxElementsPerMessage at a time; all of it stays in the one transaction.
func inChunks(op elementsOp, set *nftables.Set, elems []nftables.SetElement) error {
	for chunk := range slices.Chunk(elems, maxElementsPerMessage) {
		if err := op(set, chunk); err != nil {
			return err
		}
	}
	return nil
}

// setHairpin adds and removes endpoint addresses in the hairpin set of their family.
func (t *table) setHairpin(add, del []netip.Addr) error {
	if err := t.deleteElements(hairpinElements(del)); err != nil {
		return err
	}
	return t.addElements(hairpinElements(add))
}

// hairpinElements are the hairpin set's elements for addrs (source . destination, both the address), their
// keys in one allocation: a full sync has one per endpoint.
func hairpinElements(addrs []netip.Addr) []element {
	elems := make([]element, 0, len(addrs))
	buf := make([]byte, 0, 32*len(addrs))
	v4, v6 := setHairpin+familyIPv4.suffix, setHairpin+familyIPv6.suffix
	for _, a := range addrs {
		start := len(buf)
		buf = appendAddr(appendAddr(buf, a), a)
		set := v4
		if a.Is6() {
			set = v6
		}
		elems = append(elems, element{set: set, key: buf[start:len(buf):len(buf)]})
	}
	return elems
}

// setNodePortIPs puts the node's NodePort addresses in the set of their family.
func (t *table) setNodePortIPs() error {
	var elems []element
	for _, a := range t.nodePortIPs {
		elems = append(elems, element{set: setNodePortIPs + familyOf(a).suffix, key: a.AsSlice()})
	}
	return t.addElements(elems)
}

func elementIndex(elems []element) map[string]element {
	idx := make(map[string]element, len(elems))
	for _, e := range elems {
		idx[e.set+"\x00"+string(e.key)] = e
	}
	return idx
}

func withoutCommon(add, del []netip.Addr) ([]netip.Addr, []netip.Addr) {
	var a2, d2 []netip.Addr
	for _, a := range add {
		if !slices.Contains(del, a) {
			a2 = append(a2, a)
		}
	}
	for _, d := range del {
		if !slices.Contains(add, d) {
			d2 = append(d2, d)
		}
	}
	return a2, d2
}

func secondsDuration(s int32) time.Duration { return time.Duration(s) * time.Second }
