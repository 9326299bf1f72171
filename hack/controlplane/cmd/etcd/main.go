// etcd built from the etcd server module Kubernetes itself depends on, for local runs and tests.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
