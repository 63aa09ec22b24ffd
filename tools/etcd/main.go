// etcd's own main (go.etcd.io/etcd/v3's main.go): that root module is not published, its etcdmain package is.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
