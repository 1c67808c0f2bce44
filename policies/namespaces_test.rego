package pushgate.k8s.namespaces_test

import data.pushgate.k8s.namespaces
import data.pushgate.lib.k8s
import data.pushgate.test.fixtures

test_clean_objects_pass if {
	every obj in fixtures.clean_objects {
		count(namespaces.deny) == 0 with input as obj
	}
}

test_missing_namespace_denied if {
	obj := {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"}}
	denials := namespaces.deny with input as obj
	fixtures.msgs(denials) == {"ConfigMap \"cfg\" has no metadata.namespace: set the namespace it belongs in"}
	{d.field | some d in denials} == {"metadata.namespace"}
}

test_empty_or_blank_namespace_denied if {
	every ns in ["", "  ", null, 3, {"name": "shop"}] {
		count(namespaces.deny) == 1 with input as {"kind": "Service", "metadata": {"name": "web", "namespace": ns}}
	}
}

test_missing_metadata_denied if {
	fixtures.msgs(namespaces.deny) == {"Role has no metadata.namespace: set the namespace it belongs in"} with input as {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role"}
}

test_workloads_without_namespace_denied if {
	found := {kind |
		some kind in fixtures.pod_kinds
		obj := json.patch(fixtures.workload(kind, fixtures.good_spec), [{"op": "remove", "path": "/metadata/namespace"}])
		count(namespaces.deny) == 1 with input as obj
	}
	found == fixtures.pod_kinds
}

test_custom_resources_need_a_namespace if {
	count(namespaces.deny) == 1 with input as {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
	count(namespaces.deny) == 0 with input as {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w", "namespace": "shop"}}
}

test_every_cluster_scoped_kind_exempt if {
	every kind in k8s.cluster_scoped_kinds {
		count(namespaces.deny) == 0 with input as {"apiVersion": "v1", "kind": kind, "metadata": {"name": "x"}}
	}
}

test_cluster_scoped_examples_exempt if {
	count(namespaces.deny) == 0 with input as {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}
	count(namespaces.deny) == 0 with input as {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "reader"}}
	count(namespaces.deny) == 0 with input as {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition", "metadata": {"name": "widgets.example.com"}}
}

test_non_objects_ignored if {
	count(namespaces.deny) == 0 with input as {"metadata": {"name": "x"}}
	count(namespaces.deny) == 0 with input as {"kind": 5}
	count(namespaces.deny) == 0 with input as ["a", "list"]
}
