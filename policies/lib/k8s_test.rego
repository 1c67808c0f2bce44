package pushgate.lib.k8s_test

import data.pushgate.lib.k8s
import data.pushgate.test.fixtures

expected_paths := {
	"Pod": "spec",
	"Deployment": "spec.template.spec",
	"StatefulSet": "spec.template.spec",
	"DaemonSet": "spec.template.spec",
	"ReplicaSet": "spec.template.spec",
	"ReplicationController": "spec.template.spec",
	"Job": "spec.template.spec",
	"CronJob": "spec.jobTemplate.spec.template.spec",
	"PodTemplate": "template.spec",
}

test_pod_spec_path_for_every_kind if {
	found := {kind: path |
		some kind in fixtures.pod_kinds
		path := k8s.pod_spec_path with input as fixtures.workload(kind, fixtures.good_spec)
	}
	found == expected_paths
}

test_pod_spec_found_for_every_kind if {
	found := {kind |
		some kind in fixtures.pod_kinds
		spec := k8s.pod_spec with input as fixtures.workload(kind, fixtures.good_spec)
		spec.containers[0].name == "web"
	}
	found == fixtures.pod_kinds
}

test_no_pod_spec_for_non_workloads if {
	not k8s.pod_spec with input as fixtures.config_map
	not k8s.pod_spec with input as fixtures.service
	not k8s.pod_spec with input as {"kind": "Namespace", "metadata": {"name": "shop"}}
}

test_no_pod_spec_for_malformed_objects if {
	not k8s.pod_spec with input as {"kind": "Deployment", "metadata": {"name": "x"}}
	not k8s.pod_spec with input as {"kind": "Deployment", "spec": {"template": {"spec": "oops"}}}
	not k8s.pod_spec with input as {"kind": "Deployment", "spec": "oops"}
	not k8s.pod_spec with input as {"kind": 7, "spec": {"containers": []}}
	not k8s.pod_spec with input as {"spec": {"containers": []}}
	not k8s.pod_spec with input as ["not", "an", "object"]
	not k8s.pod_spec with input as "a string"
}

test_all_containers_covers_every_list if {
	spec := {
		"initContainers": [{"name": "init", "image": "busybox:1.36"}],
		"containers": [{"name": "web", "image": "nginx:1.27"}, {"name": "side", "image": "envoy:1.30"}],
		"ephemeralContainers": [{"name": "debug", "image": "busybox:1.36"}],
	}
	got := {[c.type, c.name, c.desc, c.field] | some c in k8s.all_containers} with input as fixtures.deployment(spec)
	got == {
		["initContainers", "init", "init container \"init\"", "spec.template.spec.initContainers[0]"],
		["containers", "web", "container \"web\"", "spec.template.spec.containers[0]"],
		["containers", "side", "container \"side\"", "spec.template.spec.containers[1]"],
		["ephemeralContainers", "debug", "ephemeral container \"debug\"", "spec.template.spec.ephemeralContainers[0]"],
	}
}

test_containers_excludes_ephemeral if {
	spec := {
		"initContainers": [{"name": "init"}],
		"containers": [{"name": "web"}],
		"ephemeralContainers": [{"name": "debug"}],
	}
	got := {c.name | some c in k8s.containers} with input as fixtures.workload("Pod", spec)
	got == {"init", "web"}
}

test_identical_containers_stay_distinct if {
	spec := fixtures.pod_spec([{"image": "nginx"}, {"image": "nginx"}])
	got := {c.desc | some c in k8s.all_containers} with input as fixtures.workload("Pod", spec)
	got == {"container \"#0\"", "container \"#1\""}
}

test_unnamed_container_gets_index_name if {
	spec := fixtures.pod_spec([{"name": "", "image": "nginx"}, {"name": 3, "image": "nginx"}])
	got := {c.name | some c in k8s.all_containers} with input as fixtures.workload("Pod", spec)
	got == {"#0", "#1"}
}

test_malformed_container_lists_are_skipped if {
	spec := {"containers": "web", "initContainers": {"name": "x"}, "ephemeralContainers": ["str", 1, null]}
	count(k8s.all_containers) == 0 with input as fixtures.workload("Pod", spec)
}

test_volumes if {
	spec := object.union(fixtures.good_spec, {"volumes": [{"name": "data", "emptyDir": {}}, {"emptyDir": {}}, "junk"]})
	got := {[v.name, v.field] | some v in k8s.volumes} with input as fixtures.deployment(spec)
	got == {["data", "spec.template.spec.volumes[0]"], ["#1", "spec.template.spec.volumes[1]"]}
}

test_pod_containers_hold_what_checks_read if {
	spec := {
		"initContainers": [{"name": "init", "image": "busybox:1.36"}],
		"containers": [{"name": "web", "image": "nginx:1.27"}, "junk", {"image": "envoy:1.30"}],
		"ephemeralContainers": [{"name": "debug", "image": "busybox:1.37"}],
	}
	got := {[e.type, e.index, e.container.image] | some e in k8s.pod_containers} with input as fixtures.deployment(spec)
	got == {
		["initContainers", 0, "busybox:1.36"],
		["containers", 0, "nginx:1.27"],
		["containers", 2, "envoy:1.30"],
		["ephemeralContainers", 0, "busybox:1.37"],
	}
	with_resources := {[e.type, e.index] | some e in k8s.pod_containers_with_resources} with input as fixtures.deployment(spec)
	with_resources == {["initContainers", 0], ["containers", 0], ["containers", 2]}
	count(k8s.pod_containers) == 0 with input as fixtures.config_map
}

test_container_refs_point_at_the_containers if {
	spec := {
		"initContainers": [{"name": "init", "image": "busybox:1.36"}],
		"containers": [{"name": "web", "image": "nginx:1.27"}, "junk", {"image": "envoy:1.30"}],
		"ephemeralContainers": [{"name": "debug", "image": "busybox:1.37"}],
	}
	refs := k8s.container_refs with input as fixtures.deployment(spec)
	{[r.type, r.index] | some r in refs} == {
		["initContainers", 0],
		["containers", 0],
		["containers", 2],
		["ephemeralContainers", 0],
	}
	count(refs) == 4
	got := {[r.type, r.index, k8s.container_at(r).image] | some r in refs} with input as fixtures.deployment(spec)
	got == {
		["initContainers", 0, "busybox:1.36"],
		["containers", 0, "nginx:1.27"],
		["containers", 2, "envoy:1.30"],
		["ephemeralContainers", 0, "busybox:1.37"],
	}
	descs := {k8s.container_desc(r) | some r in refs} with input as fixtures.deployment(spec)
	descs == {"init container \"init\"", "container \"web\"", "container \"#2\"", "ephemeral container \"debug\""}
	count(k8s.container_refs) == 0 with input as fixtures.config_map
	count(k8s.container_refs) == 0 with input as fixtures.deployment({"containers": "junk"})
}

test_volume_refs_point_at_the_volumes if {
	spec := object.union(fixtures.good_spec, {"volumes": [{"name": "data", "emptyDir": {}}, "junk", {"hostPath": {"path": "/"}}]})
	refs := k8s.volume_refs with input as fixtures.deployment(spec)
	refs == [{"index": 0}, {"index": 2}]
	got := {[r.index, k8s.volume_desc_name(r), k8s.volume_field(r), object.get(k8s.volume_at(r), "hostPath", "none")] |
		some r in refs
	} with input as fixtures.deployment(spec)
	got == {[0, "data", "spec.template.spec.volumes[0]", "none"], [2, "#2", "spec.template.spec.volumes[2]", {"path": "/"}]}
	count(k8s.volume_refs) == 0 with input as fixtures.config_map
}

test_container_desc_and_field_name_an_entry if {
	spec := fixtures.pod_spec([{"name": "web"}, {"name": "x\"y"}, {"image": "nginx"}])
	got := {[k8s.container_desc(e), k8s.container_field(e)] | some e in k8s.pod_containers} with input as fixtures.workload("CronJob", spec)
	got == {
		["container \"web\"", "spec.jobTemplate.spec.template.spec.containers[0]"],
		["container \"x?y\"", "spec.jobTemplate.spec.template.spec.containers[1]"],
		["container \"#2\"", "spec.jobTemplate.spec.template.spec.containers[2]"],
	}
}

test_pod_volumes_and_their_names if {
	spec := object.union(fixtures.good_spec, {"volumes": [{"name": "data", "emptyDir": {}}, {"emptyDir": {}}, "junk"]})
	got := {[e.index, k8s.volume_desc_name(e), k8s.volume_field(e)] | some e in k8s.pod_volumes} with input as fixtures.deployment(spec)
	got == {[0, "data", "spec.template.spec.volumes[0]"], [1, "#1", "spec.template.spec.volumes[1]"]}
}

test_workload_kinds if {
	found := {kind |
		some kind in fixtures.pod_kinds
		k8s.is_workload with input as fixtures.workload(kind, fixtures.good_spec)
	}
	found == fixtures.workload_kinds
	not k8s.is_workload with input as fixtures.config_map
}

test_cluster_scoped_kinds_from_brief_are_listed if {
	brief := {
		"Namespace", "Node", "PersistentVolume", "ClusterRole", "ClusterRoleBinding",
		"CustomResourceDefinition", "StorageClass", "PriorityClass", "ValidatingWebhookConfiguration",
		"MutatingWebhookConfiguration", "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding",
		"APIService", "IngressClass", "RuntimeClass", "CSIDriver", "VolumeAttachment",
		"CertificateSigningRequest",
	}
	count(brief - k8s.cluster_scoped_kinds) == 0
	not k8s.cluster_scoped_kinds.Deployment
	not k8s.cluster_scoped_kinds.Secret
}

test_object_desc if {
	k8s.object_desc == "ConfigMap \"web\"" with input as fixtures.config_map
	k8s.object_desc == "ConfigMap" with input as {"kind": "ConfigMap"}
	not k8s.object_desc with input as {"metadata": {"name": "x"}}
}

test_safe_strips_quotes_backslashes_and_controls if {
	k8s.safe("web-1.example") == "web-1.example"
	k8s.safe("a\"b\\c\td\ne\u001b[0m") == "a?b?c?d?e?[0m"
	k8s.safe("ünïcode") == "ünïcode"
}

test_hostile_names_are_sanitized_in_descriptions if {
	spec := fixtures.pod_spec([{"name": "x\"y\n", "image": "nginx"}])
	{c.desc | some c in k8s.all_containers} == {"container \"x?y?\""} with input as fixtures.workload("Pod", spec)
	k8s.object_desc == "Secret \"a?b\"" with input as {"kind": "Secret", "metadata": {"name": "a\\b"}}
}
