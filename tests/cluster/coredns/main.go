// CoreDNS with only the plugins the test cluster's Corefile uses (the upstream
// binary links ~50 plugins and their cloud SDKs). Each plugin registers itself in
// its package's init(); the order of the chain is CoreDNS's own directive list.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/hosts"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/loop"
	_ "github.com/coredns/coredns/plugin/ready"
	_ "github.com/coredns/coredns/plugin/reload"
	_ "github.com/coredns/coredns/plugin/whoami"
)

// The directive list is CoreDNS's full one: a directive whose plugin is not linked
// here is simply unknown, and a Corefile naming it fails to load.
var _ = dnsserver.Directives

func main() { coremain.Run() }
