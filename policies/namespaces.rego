# Namespaced objects name their namespace (metadata.namespace set and non-empty), so a push never
# depends on the applier's default namespace. Cluster-scoped kinds are listed once, in
# data.pushgate.lib.k8s.cluster_scoped_kinds.
package pushgate.k8s.namespaces

import data.pushgate.lib.k8s

deny contains {"msg": msg, "field": "metadata.namespace"} if {
	not has_namespace
	is_string(k8s.kind)
	not k8s.is_cluster_scoped
	msg := concat("", [k8s.object_desc, " has no metadata.namespace: set the namespace it belongs in"])
}

has_namespace if {
	is_string(input.metadata.namespace)
	trim_space(input.metadata.namespace) != ""
}
