# Workloads (Deployment, StatefulSet, DaemonSet, Job, CronJob, ReplicaSet, Pod) carry the
# app.kubernetes.io/name label in metadata.labels, with a non-empty value.
package pushgate.k8s.labels

import data.pushgate.lib.k8s

label := "app.kubernetes.io/name"

deny contains {"msg": msg, "field": field} if {
	not has_label
	k8s.is_workload
	field := concat("", ["metadata.labels[\"", label, "\"]"])
	msg := concat("", [k8s.object_desc, " has no ", label, " label: add ", field, " naming the application"])
}

has_label if {
	value := input.metadata.labels[label]
	is_string(value)
	trim_space(value) != ""
}
