# Pods stay off the host: no privileged containers, no hostPath volumes, no host network, PID or
# IPC namespace. A PersistentVolume backed by hostPath is denied too (same access to the node).
package pushgate.k8s.security

import data.pushgate.lib.k8s

# Pod-spec flags that share a host namespace, and what sharing it gives away.
host_namespaces := {
	"hostNetwork": "the node's network",
	"hostPID": "the node's process namespace",
	"hostIPC": "the node's IPC namespace",
}

deny contains {"msg": msg, "field": field} if {
	some c in k8s.container_refs
	k8s.container_at(c).securityContext.privileged == true
	field := concat("", [k8s.container_field(c), ".securityContext.privileged"])
	msg := concat("", [k8s.container_desc(c), " is privileged: remove securityContext.privileged (grant only the capabilities it needs)"])
}

deny contains {"msg": msg, "field": field} if {
	some v in k8s.volume_refs
	is_object(k8s.volume_at(v).hostPath)
	field := concat("", [k8s.volume_field(v), ".hostPath"])
	msg := concat("", ["volume \"", k8s.volume_desc_name(v), "\" mounts a hostPath: use a PersistentVolumeClaim, configMap, secret or emptyDir volume"])
}

deny contains {"msg": msg, "field": field} if {
	k8s.has_pod_spec # first: regopy would list host_namespaces for every object
	spec := k8s.pod_spec
	some flag, what in host_namespaces
	spec[flag] == true
	field := concat(".", [k8s.pod_spec_path, flag])
	msg := concat("", ["pod spec sets ", flag, ": true and shares ", what, ": remove ", flag])
}

deny contains {"msg": msg, "field": "spec.hostPath"} if {
	k8s.kind == "PersistentVolume"
	is_object(input.spec.hostPath)
	msg := concat("", [k8s.object_desc, " is a hostPath volume: use a storage class or a local volume with node affinity"])
}
