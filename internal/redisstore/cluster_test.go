package redisstore

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flowlock/flowlock/internal/redisstore/redistest"
)

// TestCluster runs the store against three masters made with
// redis-cli --cluster create, started once for the subtests.
func TestCluster(t *testing.T) {
	cl := redistest.StartCluster(t, 3)
	a := open(t, Options{Addrs: cl.Addrs()[:1]}) // one seed is enough
	b := open(t, Options{Addrs: cl.Addrs()})
	if !a.Cluster() || !b.Cluster() {
		t.Fatal("the store did not detect the cluster")
	}

	t.Run("merge spreads identities over the nodes", func(t *testing.T) {
		ctx := ctxT(t)
		const ids = 300
		batch := make([]Observation, ids)
		for i := range batch {
			batch[i] = Observation{ID: fmt.Sprint("client-", i), Times: []int64{us(int64(i), 0)}}
		}
		if _, err := a.Merge(ctx, batch); err != nil {
			t.Fatal(err)
		}
		for i := range batch {
			batch[i].Times = []int64{us(int64(i), 1)}
		}
		got, err := b.Merge(ctx, batch)
		if err != nil {
			t.Fatal(err)
		}
		for i, m := range got {
			if want := []int64{us(int64(i), 0), us(int64(i), 1)}; !slices.Equal(m.Times, want) {
				t.Fatalf("%s: %v, want %v", m.ID, m.Times, want)
			}
		}
		// Every node holds a share of the rings, in the slot the hash tag picks.
		total := 0
		for _, n := range cl.Nodes {
			keys := n.Info("keyspace")["db0"]
			k, _, _ := strings.Cut(strings.TrimPrefix(keys, "keys="), ",")
			cnt, _ := strconv.Atoi(k)
			if cnt < ids/10 {
				t.Errorf("node %s holds %d keys (%s), want a share of %d", n.Addr, cnt, keys, ids)
			}
			total += cnt
		}
		if total < ids {
			t.Errorf("nodes hold %d keys in all, want at least %d", total, ids)
		}
		key := a.keys.timingKey("client-7")
		tagged := "{" + idHash("client-7") + "}"
		s1, _ := cl.Nodes[0].CLI("CLUSTER", "KEYSLOT", key)
		s2, _ := cl.Nodes[0].CLI("CLUSTER", "KEYSLOT", tagged)
		if s1 != s2 {
			t.Errorf("KEYSLOT %s = %s, of its tag %s = %s", key, s1, tagged, s2)
		}
	})

	t.Run("quarantine and events", func(t *testing.T) {
		ctx := ctxT(t)
		c := subscribe(t, b)
		c.waitFor(t, 2*time.Second, "first resync", isOp(OpResync))
		e := entryAt("ban{me}", time.Now(), time.Minute, 2)
		if _, err := a.Put(ctx, e); err != nil {
			t.Fatal(err)
		}
		if got := c.waitFor(t, time.Second, "put", isOp(OpPut)); !sameEntry(got.Entry, e) {
			t.Errorf("put event %+v, want %+v", got.Entry, e)
		}
		all, err := b.All(ctx, time.Now())
		if err != nil || len(all) != 1 || !sameEntry(all[0], e) {
			t.Errorf("All = %+v, %v", all, err)
		}
		if _, err := b.Delete(ctx, e.ID); err != nil {
			t.Fatal(err)
		}
		c.waitFor(t, time.Second, "delete", isOp(OpDelete))
	})
}
