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
# - regopy runs a rule once per object, but a function at every call, and every step costs
#   microseconds (a literal collection is rebuilt, element by element, each time it is read):
#   rules test their cheapest condition first (the one most objects fail), and what a message
#   says (container_desc, container_field, volume_desc_name, volume_field) is made only for what
#   a rule denies.
# - regopy copies a value whole each time it puts it into a new array or object, and tests a
#   collection that a rule iterates (`some x in xs`) by printing it: a list of containers cost a
#   Deployment ~0.5 ms a decision. The rules iterate container_refs and volume_refs, which hold
#   where a container or volume is ({"type", "index"}), and read it with container_at and
#   volume_at; pod_containers and pod_volumes, which hold the values, stay for policies that use
#   them.
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

# Whether the object has a pod spec. (A test first: regopy would otherwise list the container
# types for every object before it finds there is no pod spec to read them from.)
has_pod_spec if is_object(pod_spec)

# Where every container of the pod spec is (containers, initContainers and ephemeralContainers,
# objects only): an array of {"type": "containers" | "initContainers" | ..., "index": i}.
# A rule reads the container with container_at, and names a denied one with container_desc and
# container_field.
container_refs := [{"type": type, "index": i} |
	has_pod_spec
	some type in container_type_list
	list := pod_spec[type]
	is_array(list)
	c := list[i]
	is_object(c)
]

container_type_list := ["containers", "initContainers", "ephemeralContainers"]

# The container a container_refs (or pod_containers) entry points at.
container_at(ref) := pod_spec[ref.type][ref.index]

# container_refs with each container: an array of
#   {"container": <the container object>, "type": "containers" | ..., "index": i}
pod_containers := [{"container": pod_spec[r.type][r.index], "type": r.type, "index": r.index} | some r in container_refs]

# The pod_containers that run with resources: containers and initContainers (not ephemeral ones).
pod_containers_with_resources := [e | e := pod_containers[_]; e.type != "ephemeralContainers"]

# How a message names a container_refs (or pod_containers) entry: `container "web"`,
# `init container "#1"`.
container_desc(e) := concat("", [container_types[e.type], " \"", container_name(container_at(e), e.index), "\""])

# Where a container_refs (or pod_containers) entry is: `spec.template.spec.containers[0]`.
container_field(e) := sprintf("%s.%s[%d]", [pod_spec_path, e.type, e.index])

# pod_containers with their names and messages made (for policies that read them): an array of
#   {"container": <the container object>, "type": "containers" | "initContainers" | ...,
#    "name": "<display name>", "desc": "container \"web\"", "field": "spec.containers[0]"}
all_containers := [entry |
	some e in pod_containers
	entry := {
		"container": e.container,
		"type": e.type,
		"name": container_name(e.container, e.index),
		"desc": container_desc(e),
		"field": container_field(e),
	}
]

# all_containers without the ephemeral ones.
containers := [entry | entry := all_containers[_]; entry.type != "ephemeralContainers"]

# A container's name, or "#<index>" when it has none (the schema check reports that separately).
container_name(c, _) := safe(c.name) if has_name(c)

container_name(c, i) := sprintf("#%d", [i]) if not has_name(c)

# Whether a container or volume has a non-empty name.
has_name(x) if {
	is_string(x.name)
	x.name != ""
}

# Where every volume of the pod spec is (objects only): an array of {"index": i}. A rule reads
# the volume with volume_at, and names a denied one with volume_desc_name and volume_field.
volume_refs := [{"index": i} |
	list := pod_spec.volumes
	is_array(list)
	v := list[i]
	is_object(v)
]

# The volume a volume_refs (or pod_volumes) entry points at.
volume_at(ref) := pod_spec.volumes[ref.index]

# volume_refs with each volume: an array of {"volume": <the volume object>, "index": i}.
pod_volumes := [{"volume": pod_spec.volumes[r.index], "index": r.index} | some r in volume_refs]

# A volume_refs (or pod_volumes) entry's name, or "#<index>" when it has none.
volume_desc_name(e) := volume_name(volume_at(e), e.index)

# Where a volume_refs (or pod_volumes) entry is: `spec.template.spec.volumes[0]`.
volume_field(e) := sprintf("%s.volumes[%d]", [pod_spec_path, e.index])

# pod_volumes with their names and fields made (for policies that read them): an array of
#   {"volume": <the volume object>, "name": "<name>", "field": "<path>"}.
volumes := [entry |
	some e in pod_volumes
	entry := {"volume": e.volume, "name": volume_desc_name(e), "field": volume_field(e)}
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
