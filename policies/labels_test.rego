package pushgate.k8s.labels_test

import data.pushgate.k8s.labels
import data.pushgate.test.fixtures

# A workload of `kind` whose metadata.labels is `l`.
labelled(kind, l) := json.patch(fixtures.workload(kind, fixtures.good_spec), [{"op": "replace", "path": "/metadata/labels", "value": l}])

test_clean_objects_pass if {
	every obj in fixtures.clean_objects {
		count(labels.deny) == 0 with input as obj
	}
}

test_label_with_other_labels_passes if {
	count(labels.deny) == 0 with input as labelled("Deployment", {"app.kubernetes.io/name": "web", "tier": "frontend"})
}

test_missing_label_denied if {
	denials := labels.deny with input as labelled("Deployment", {"app": "web"})
	fixtures.msgs(denials) == {"Deployment \"web\" has no app.kubernetes.io/name label: add metadata.labels[\"app.kubernetes.io/name\"] naming the application"}
	{d.field | some d in denials} == {"metadata.labels[\"app.kubernetes.io/name\"]"}
}

test_empty_or_odd_label_value_denied if {
	every value in ["", "   ", null, 1, true] {
		count(labels.deny) == 1 with input as labelled("Pod", {"app.kubernetes.io/name": value})
	}
}

test_no_labels_or_metadata_denied if {
	count(labels.deny) == 1 with input as json.patch(fixtures.workload("Job", fixtures.good_spec), [{"op": "remove", "path": "/metadata/labels"}])
	fixtures.msgs(labels.deny) == {"CronJob has no app.kubernetes.io/name label: add metadata.labels[\"app.kubernetes.io/name\"] naming the application"} with input as {"kind": "CronJob"}
}

test_template_label_alone_is_not_enough if {
	# the pod template carries the label (fixtures.template) but the object itself does not
	obj := labelled("StatefulSet", {})
	obj.spec.template.metadata.labels["app.kubernetes.io/name"] == "web"
	count(labels.deny) == 1 with input as obj
}

test_every_workload_kind_checked if {
	found := {kind |
		some kind in fixtures.pod_kinds
		count(labels.deny) == 1 with input as labelled(kind, {})
	}
	found == fixtures.workload_kinds
}

test_non_workloads_ignored if {
	count(labels.deny) == 0 with input as {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "shop"}}
	count(labels.deny) == 0 with input as {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s", "namespace": "shop"}}
	count(labels.deny) == 0 with input as {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}
}
