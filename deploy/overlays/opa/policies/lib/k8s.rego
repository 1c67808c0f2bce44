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
# - no `with` outside *_test.rego.
package pushgate.lib.k8s

# Kinds that run pods, and so must carry the app.kubernetes.io/name label.
workload_kinds := {"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "ReplicaSet", "Pod"}

# Kinds whose pod spec is at spec.template.spec.
template_kinds := {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "ReplicationController"}

# Cluster-scoped built-in kinds: they have no metadata.namespace. The single list of them.
cluster_scoped_kinds := {
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
}

# The container lists of a pod spec, and how a message names one of their containers.
container_types := {
	"containers": "container",
	"initContainers": "init container",
	"ephemeralContainers": "ephemeral container",
}

# The object's kind, when it has one.
kind := input.kind if is_string(input.kind)

is_workload if workload_kinds[kind]

is_cluster_scoped if cluster_scoped_kinds[kind]

# Dotted path of the pod spec inside the object.
pod_spec_path := "spec" if kind == "Pod"

pod_spec_path := "spec.template.spec" if template_kinds[kind]

pod_spec_path := "spec.jobTemplate.spec.template.spec" if kind == "CronJob"

pod_spec_path := "template.spec" if kind == "PodTemplate"

# The pod spec itself (an object), for every kind that has one.
pod_spec := spec if {
	spec := object.get(input, split(pod_spec_path, "."), null)
	is_object(spec)
}

# Every container of the pod spec (containers, initContainers and ephemeralContainers), as
#   {"container": <the container object>, "type": "containers" | "initContainers" | ...,
#    "name": "<display name>", "desc": "container \"web\"", "field": "spec.containers[0]"}
all_containers contains entry if {
	some type, label in container_types
	list := pod_spec[type]
	is_array(list)
	some i, c in list
	is_object(c)
	name := container_name(c, i)
	entry := {
		"container": c,
		"type": type,
		"name": name,
		"desc": concat("", [label, " \"", name, "\""]),
		"field": sprintf("%s.%s[%d]", [pod_spec_path, type, i]),
	}
}

# The containers that run with resources: containers and initContainers (not ephemeral ones).
containers contains entry if {
	some entry in all_containers
	entry.type != "ephemeralContainers"
}

# A container's name, or "#<index>" when it has none (the schema check reports that separately).
container_name(c, _) := safe(c.name) if has_name(c)

container_name(c, i) := sprintf("#%d", [i]) if not has_name(c)

# Whether a container or volume has a non-empty name.
has_name(x) if {
	is_string(x.name)
	x.name != ""
}

# The object's pod-spec volumes, as {"volume": <volume>, "name": "<name>", "field": "<path>"}.
volumes contains entry if {
	list := pod_spec.volumes
	is_array(list)
	some i, v in list
	is_object(v)
	entry := {
		"volume": v,
		"name": volume_name(v, i),
		"field": sprintf("%s.volumes[%d]", [pod_spec_path, i]),
	}
}

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
