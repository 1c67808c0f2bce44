"""The test bed: real components (etcd, kube-apiserver, kube-controller-manager, OPA, git) started
on loopback by the test suite and torn down with no process left behind."""
