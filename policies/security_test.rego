package pushgate.k8s.security_test

import data.pushgate.k8s.security
import data.pushgate.test.fixtures

with_context(ctx) := object.union(fixtures.container("web"), {"securityContext": ctx})

spec_with(extra) := object.union(fixtures.good_spec, extra)

test_clean_objects_pass if {
	every obj in fixtures.clean_objects {
		count(security.deny) == 0 with input as obj
	}
}

test_unprivileged_contexts_pass if {
	every ctx in [
		{"privileged": false},
		{"runAsNonRoot": true, "allowPrivilegeEscalation": false},
		{},
		{"privileged": "true"},
	] {
		count(security.deny) == 0 with input as fixtures.deployment(fixtures.pod_spec([with_context(ctx)]))
	}
}

test_privileged_container_denied if {
	denials := security.deny with input as fixtures.deployment(fixtures.pod_spec([with_context({"privileged": true})]))
	fixtures.msgs(denials) == {"container \"web\" is privileged: remove securityContext.privileged (grant only the capabilities it needs)"}
	{d.field | some d in denials} == {"spec.template.spec.containers[0].securityContext.privileged"}
}

test_privileged_init_and_ephemeral_containers_denied if {
	spec := {
		"initContainers": [{"name": "setup", "image": "busybox:1.36", "securityContext": {"privileged": true}}],
		"containers": [fixtures.container("web")],
		"ephemeralContainers": [{"name": "debug", "image": "busybox:1.36", "securityContext": {"privileged": true}}],
	}
	fixtures.msgs(security.deny) == {
		"init container \"setup\" is privileged: remove securityContext.privileged (grant only the capabilities it needs)",
		"ephemeral container \"debug\" is privileged: remove securityContext.privileged (grant only the capabilities it needs)",
	} with input as fixtures.workload("Pod", spec)
}

test_privileged_found_in_every_kind if {
	spec := fixtures.pod_spec([with_context({"privileged": true})])
	found := {kind |
		some kind in fixtures.pod_kinds
		count(security.deny) == 1 with input as fixtures.workload(kind, spec)
	}
	found == fixtures.pod_kinds
}

test_safe_volumes_pass if {
	spec := spec_with({"volumes": [
		{"name": "data", "persistentVolumeClaim": {"claimName": "data"}},
		{"name": "tmp", "emptyDir": {}},
		{"name": "cfg", "configMap": {"name": "cfg"}},
		{"name": "odd", "hostPath": null},
	]})
	count(security.deny) == 0 with input as fixtures.deployment(spec)
}

test_host_path_volume_denied if {
	spec := spec_with({"volumes": [
		{"name": "tmp", "emptyDir": {}},
		{"name": "docker-sock", "hostPath": {"path": "/var/run/docker.sock", "type": "Socket"}},
	]})
	denials := security.deny with input as fixtures.workload("DaemonSet", spec)
	fixtures.msgs(denials) == {"volume \"docker-sock\" mounts a hostPath: use a PersistentVolumeClaim, configMap, secret or emptyDir volume"}
	{d.field | some d in denials} == {"spec.template.spec.volumes[1].hostPath"}
}

test_empty_host_path_denied if {
	count(security.deny) == 1 with input as fixtures.workload("Pod", spec_with({"volumes": [{"name": "h", "hostPath": {}}]}))
}

test_host_path_found_in_cronjob if {
	spec := spec_with({"volumes": [{"name": "h", "hostPath": {"path": "/"}}]})
	{d.field | some d in security.deny} == {"spec.jobTemplate.spec.template.spec.volumes[0].hostPath"} with input as fixtures.workload("CronJob", spec)
}

test_host_network_denied if {
	denials := security.deny with input as fixtures.deployment(spec_with({"hostNetwork": true}))
	fixtures.msgs(denials) == {"pod spec sets hostNetwork: true and shares the node's network: remove hostNetwork"}
	{d.field | some d in denials} == {"spec.template.spec.hostNetwork"}
}

test_host_pid_denied if {
	fixtures.msgs(security.deny) == {"pod spec sets hostPID: true and shares the node's process namespace: remove hostPID"} with input as fixtures.workload("Pod", spec_with({"hostPID": true}))
}

test_host_ipc_denied if {
	fixtures.msgs(security.deny) == {"pod spec sets hostIPC: true and shares the node's IPC namespace: remove hostIPC"} with input as fixtures.workload("Job", spec_with({"hostIPC": true}))
}

test_host_namespaces_false_pass if {
	spec := spec_with({"hostNetwork": false, "hostPID": false, "hostIPC": false})
	count(security.deny) == 0 with input as fixtures.deployment(spec)
}

test_all_host_access_reported_together if {
	spec := {
		"hostNetwork": true,
		"hostPID": true,
		"hostIPC": true,
		"volumes": [{"name": "root", "hostPath": {"path": "/"}}],
		"containers": [with_context({"privileged": true})],
	}
	count(security.deny) == 5 with input as fixtures.workload("StatefulSet", spec)
}

test_persistent_volume_host_path_denied if {
	pv := {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "local-pv"}, "spec": {"capacity": {"storage": "1Gi"}, "hostPath": {"path": "/data"}}}
	fixtures.msgs(security.deny) == {"PersistentVolume \"local-pv\" is a hostPath volume: use a storage class or a local volume with node affinity"} with input as pv
}

test_persistent_volume_without_host_path_passes if {
	pv := {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "nfs"}, "spec": {"nfs": {"server": "nfs", "path": "/"}}}
	count(security.deny) == 0 with input as pv
}

test_non_workloads_ignored if {
	obj := {"apiVersion": "v1", "kind": "ConfigMap", "metadata": fixtures.meta, "spec": {"hostNetwork": true, "volumes": [{"name": "h", "hostPath": {"path": "/"}}]}}
	count(security.deny) == 0 with input as obj
}
