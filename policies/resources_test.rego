package pushgate.k8s.resources_test

import data.pushgate.k8s.resources
import data.pushgate.test.fixtures

# The denials for a Deployment whose one container "web" has `res` as its resources.
deny_resources(res) := denials if {
	c := object.union(object.remove(fixtures.container("web"), ["resources"]), {"resources": res})
	denials := resources.deny with input as fixtures.deployment(fixtures.pod_spec([c]))
}

test_clean_objects_pass if {
	every obj in fixtures.clean_objects {
		count(resources.deny) == 0 with input as obj
	}
}

test_numeric_quantities_pass if {
	count(deny_resources({"requests": {"cpu": 1, "memory": 134217728}, "limits": {"cpu": 2, "memory": "1Gi"}})) == 0
}

test_no_resources_denied if {
	c := object.remove(fixtures.container("web"), ["resources"])
	denials := resources.deny with input as fixtures.deployment(fixtures.pod_spec([c]))
	fixtures.msgs(denials) == {"container \"web\" does not set resources.requests.cpu, resources.requests.memory, resources.limits.cpu, resources.limits.memory: set CPU and memory requests and limits"}
	{d.field | some d in denials} == {"spec.template.spec.containers[0].resources"}
}

test_empty_resources_denied if {
	count(deny_resources({})) == 1
	count(deny_resources({"requests": {}, "limits": {}})) == 1
	count(deny_resources(null)) == 1
}

test_missing_cpu_request_denied if {
	fixtures.msgs(deny_resources({"requests": {"memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}})) == {"container \"web\" does not set resources.requests.cpu: set CPU and memory requests and limits"}
}

test_missing_memory_request_denied if {
	fixtures.msgs(deny_resources({"requests": {"cpu": "1"}, "limits": {"cpu": "1", "memory": "1Gi"}})) == {"container \"web\" does not set resources.requests.memory: set CPU and memory requests and limits"}
}

test_missing_cpu_limit_denied if {
	fixtures.msgs(deny_resources({"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"memory": "1Gi"}})) == {"container \"web\" does not set resources.limits.cpu: set CPU and memory requests and limits"}
}

test_missing_memory_limit_denied if {
	fixtures.msgs(deny_resources({"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "1"}})) == {"container \"web\" does not set resources.limits.memory: set CPU and memory requests and limits"}
}

test_only_limits_denied if {
	fixtures.msgs(deny_resources({"limits": {"cpu": "1", "memory": "1Gi"}})) == {"container \"web\" does not set resources.requests.cpu, resources.requests.memory: set CPU and memory requests and limits"}
}

test_empty_or_null_values_count_as_missing if {
	fixtures.msgs(deny_resources({"requests": {"cpu": "", "memory": null}, "limits": {"cpu": "1", "memory": "1Gi"}})) == {"container \"web\" does not set resources.requests.cpu, resources.requests.memory: set CPU and memory requests and limits"}
}

test_malformed_resources_denied if {
	count(deny_resources("lots")) == 1
	count(deny_resources({"requests": "1", "limits": ["1"]})) == 1
	fixtures.msgs(deny_resources({"requests": {"cpu": {"m": 1}, "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}})) == {"container \"web\" does not set resources.requests.cpu: set CPU and memory requests and limits"}
}

test_init_containers_checked if {
	spec := {
		"initContainers": [{"name": "migrate", "image": "flyway:10"}],
		"containers": [fixtures.container("web")],
	}
	denials := resources.deny with input as fixtures.workload("StatefulSet", spec)
	fixtures.msgs(denials) == {"init container \"migrate\" does not set resources.requests.cpu, resources.requests.memory, resources.limits.cpu, resources.limits.memory: set CPU and memory requests and limits"}
	{d.field | some d in denials} == {"spec.template.spec.initContainers[0].resources"}
}

test_ephemeral_containers_exempt if {
	spec := object.union(fixtures.good_spec, {"ephemeralContainers": [{"name": "debug", "image": "busybox:1.36"}]})
	count(resources.deny) == 0 with input as fixtures.workload("Pod", spec)
}

test_one_denial_per_container if {
	spec := fixtures.pod_spec([
		{"name": "a", "image": "nginx:1"},
		fixtures.container("b"),
		{"name": "c", "image": "nginx:1", "resources": {"limits": {"cpu": "1"}}},
	])
	fixtures.msgs(resources.deny) == {
		"container \"a\" does not set resources.requests.cpu, resources.requests.memory, resources.limits.cpu, resources.limits.memory: set CPU and memory requests and limits",
		"container \"c\" does not set resources.requests.cpu, resources.requests.memory, resources.limits.memory: set CPU and memory requests and limits",
	} with input as fixtures.deployment(spec)
}

test_every_workload_kind_checked if {
	spec := fixtures.pod_spec([{"name": "web", "image": "nginx:1"}])
	found := {kind |
		some kind in fixtures.pod_kinds
		count(resources.deny) == 1 with input as fixtures.workload(kind, spec)
	}
	found == fixtures.pod_kinds
}

test_non_workloads_ignored if {
	obj := {"apiVersion": "v1", "kind": "Service", "metadata": fixtures.meta, "spec": {"containers": [{"name": "x"}]}}
	count(resources.deny) == 0 with input as obj
}
