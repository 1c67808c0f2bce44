# Test fixtures shared by the *_test.rego files (loaded by `opa test` only: the server skips
# *_test.rego). Build well-formed, policy-clean objects and let each test break one thing.
package pushgate.test.fixtures

labels := {"app.kubernetes.io/name": "web"}

meta := {"name": "web", "namespace": "shop", "labels": labels}

resources := {
	"requests": {"cpu": "100m", "memory": "128Mi"},
	"limits": {"cpu": "500m", "memory": "256Mi"},
}

# A container that passes every policy.
container(name) := {"name": name, "image": "registry.example.com/shop/web:1.4.2", "resources": resources}

container_with(name, image) := object.union(container(name), {"image": image})

pod_spec(containers) := {"containers": containers}

good_spec := pod_spec([container("web")])

# Every kind that has a pod spec, and how each wraps it.
pod_kinds := {"Pod", "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob", "ReplicationController", "PodTemplate"}

workload_kinds := {"Pod", "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob"}

template(spec) := {"metadata": {"labels": labels}, "spec": spec}

api_version := {
	"Pod": "v1",
	"ReplicationController": "v1",
	"PodTemplate": "v1",
	"Deployment": "apps/v1",
	"StatefulSet": "apps/v1",
	"DaemonSet": "apps/v1",
	"ReplicaSet": "apps/v1",
	"Job": "batch/v1",
	"CronJob": "batch/v1",
}

base(kind) := {"apiVersion": api_version[kind], "kind": kind, "metadata": meta}

workload("Pod", spec) := object.union(base("Pod"), {"spec": spec})

workload("PodTemplate", spec) := object.union(base("PodTemplate"), {"template": template(spec)})

workload("CronJob", spec) := object.union(base("CronJob"), {"spec": {
	"schedule": "0 * * * *",
	"jobTemplate": {"spec": {"template": template(object.union(spec, {"restartPolicy": "Never"}))}},
}})

workload("Job", spec) := object.union(base("Job"), {"spec": {"template": template(object.union(spec, {"restartPolicy": "Never"}))}})

workload(kind, spec) := object.union(base(kind), {"spec": {
	"selector": {"matchLabels": labels},
	"template": template(spec),
}}) if kind in {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "ReplicationController"}

deployment(spec) := workload("Deployment", spec)

config_map := {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {"k": "v"}}

service := {"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": {
	"selector": labels,
	"ports": [{"port": 80, "targetPort": 8080}],
}}

# An object of every kind above, all clean.
clean_objects := {workload(kind, good_spec) | some kind in pod_kinds} | {config_map, service}

# The "msg" of every decision in a deny/warn set.
msgs(decisions) := {d.msg | some d in decisions}
