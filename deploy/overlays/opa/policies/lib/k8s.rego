# Shared helpers for the pushgate.k8s.* policies: where an object's pod spec lives, its
# containers, and which kinds are workloads or cluster-scoped.
#
# `input` is ONE parsed Kubernetes object. Every helper is undefined (never an error) for objects
# that are not workloads or are malformed, so the rules built on them simply produce nothing.
#
# Portability: these files run under OPA 1.x and under regopy 1.5 and must decide the same.
# regopy 1.5.2 differs from OPA in ways that shape this code:
# - messages are built with concat(), not sprintf(): regopy's sprintf ignores `%q`, and pastes the
#   result of concat()/regex.replace()/upper() JSON-quoted (`"x"`) when it interpolates one;
# - every manifest string in a message goes through safe(): regopy does not escape `"`, `\` or
#   control characters when it serialises its result, which breaks the JSON the caller parses;
# - regopy's regex engine rejects `\x..` escapes: use classes such as [[:cntrl:]];
# - no `some k, v in xs` inside a comprehension (regopy cannot parse it): use it in rule bodies;
# - no `if every ...` without braces;
# - never `not f(input.missing)`: OPA says undefined, regopy says true. Test in a helper rule;
# - no `with` outside *_test.rego;
# - regopy builds every rule's value again for each object it decides, and a set (a literal or a
#   partial rule) costs far more to build than an array (23 kinds: ~0.2 ms against ~0.02): the
#   helpers below test membership in arrays, read the pod spec by direct references and list
#   containers and volumes as arrays (bench/RESULTS.md, gate_full). The sets stay for policies
#   that use them.
package pushgate.lib.k8s

# Kinds that run pods, and so must carry the app.kubernetes.io/name label.
workload_kinds := {k | some k in workload_kind_list}

workload_kind_list := ["Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "ReplicaSet", "Pod"]

# Kinds whose pod spec is at spec.template.spec.
template_kinds := {k | some k in template_kind_list}

template_kind_list := ["Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "ReplicationController"]

# Cluster-scoped built-in kinds: they have no metadata.namespace. The single list of them.
cluster_scoped_kinds := {k | some k in cluster_scoped_kind_list}

cluster_scoped_kind_list := [
	"APIService",
	"CertificateSigningRequest",
	"ClusterRole",
	"ClusterRoleBinding",
	"CSIDriver",
	"CSINode",
	"CustomResourceDefinition",
	"FlowSchema",
	"IngressClass",
	"MutatingAdmissionPolicy",
	"MutatingAdmissionPolicyBinding",
	"MutatingWebhookConfiguration",
	"Namespace",
	"Node",
	"PersistentVolume",
	"PriorityClass",
	"PriorityLevelConfiguration",
	"RuntimeClass",
	"StorageClass",
	"ValidatingAdmissionPolicy",
	"ValidatingAdmissionPolicyBinding",
	"ValidatingWebhookConfiguration",
	"VolumeAttachment",
]

# The container lists of a pod spec, and how a message names one of their containers.
container_types := {
	"containers": "container",
	"initContainers": "init container",
	"ephemeralContainers": "ephemeral container",
}

# The object's kind, when it has one.
kind := input.kind if is_string(input.kind)

is_workload if kind in workload_kind_list

is_cluster_scoped if kind in cluster_scoped_kind_list

# Dotted path of the pod spec inside the object.
pod_spec_path := "spec" if kind == "Pod"

pod_spec_path := "spec.template.spec" if kind in template_kind_list

pod_spec_path := "spec.jobTemplate.spec.template.spec" if kind == "CronJob"

pod_spec_path := "template.spec" if kind == "PodTemplate"

# The pod spec itself (an object), for every kind that has one.
pod_spec := spec if {
	kind == "Pod"
	spec := input.spec
	is_object(spec)
}

pod_spec := spec if {
	kind in template_kind_list
	spec := input.spec.template.spec
	is_object(spec)
}

pod_spec := spec if {
	kind == "CronJob"
	spec := input.spec.jobTemplate.spec.template.spec
	is_object(spec)
}

pod_spec := spec if {
	kind == "PodTemplate"
	spec := input.template.spec
	is_object(spec)
}

# Every container of the pod spec (containers, initContainers and ephemeralContainers): an
# array of
#   {"container": <the container object>, "type": "containers" | "initContainers" | ...,
#    "name": "<display name>", "desc": "container \"web\"", "field": "spec.containers[0]"}
all_containers := [entry |
	label := container_types[type]
	list := pod_spec[type]
	is_array(list)
	c := list[i]
	is_object(c)
	name := container_name(c, i)
	entry := {
		"container": c,
		"type": type,
		"name": name,
		"desc": concat("", [label, " \"", name, "\""]),
		"field": sprintf("%s.%s[%d]", [pod_spec_path, type, i]),
	}
]

# The containers that run with resources: containers and initContainers (not ephemeral ones).
containers := [entry | entry := all_containers[_]; entry.type != "ephemeralContainers"]

# A container's name, or "#<index>" when it has none (the schema check reports that separately).
container_name(c, _) := safe(c.name) if has_name(c)

container_name(c, i) := sprintf("#%d", [i]) if not has_name(c)

# Whether a container or volume has a non-empty name.
has_name(x) if {
	is_string(x.name)
	x.name != ""
}

# The object's pod-spec volumes: an array of
#   {"volume": <the volume object>, "name": "<name>", "field": "<path>"}.
volumes := [entry |
	list := pod_spec.volumes
	is_array(list)
	v := list[i]
	is_object(v)
	entry := {
		"volume": v,
		"name": volume_name(v, i),
		"field": sprintf("%s.volumes[%d]", [pod_spec_path, i]),
	}
]

volume_name(v, _) := safe(v.name) if has_name(v)

volume_name(v, i) := sprintf("#%d", [i]) if not has_name(v)

# "Kind \"name\"" for messages about the object itself ("Kind" when it has no name).
object_desc := concat("", [safe(kind), " \"", safe(input.metadata.name), "\""]) if has_object_name

object_desc := safe(kind) if not has_object_name

has_object_name if {
	is_string(input.metadata.name)
	input.metadata.name != ""
}

# A manifest string made safe for a message: `"`, `\` and control characters become "?".
# (Messages are echoed to the pusher's terminal, and regopy emits these unescaped.)
safe(s) := regex.replace(s, `[[:cntrl:]"\\]`, "?")
