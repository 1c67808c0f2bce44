# Every container and init container sets CPU and memory requests and limits (ephemeral
# containers cannot have resources). One denial per container, naming everything it lacks.
package pushgate.k8s.resources

import data.pushgate.lib.k8s

# The settings every container needs, in the order messages list them.
required := [
	["requests", "cpu"],
	["requests", "memory"],
	["limits", "cpu"],
	["limits", "memory"],
]

deny contains {"msg": msg, "field": field} if {
	some c in k8s.container_refs
	c.type != "ephemeralContainers"
	container := k8s.container_at(c)
	not all_set(container)
	missing := [concat(".", path) | some path in required; not is_set(container, path)]
	count(missing) > 0
	field := concat("", [k8s.container_field(c), ".resources"])
	msg := concat("", [
		k8s.container_desc(c), " does not set resources.", concat(", resources.", missing),
		": set CPU and memory requests and limits",
	])
}

# Whether all four are set as non-empty strings (most containers): the cheap test first, where
# naming what is missing takes a lookup per setting. A container it does not clear (a number, a
# missing setting) goes on to `missing`, which decides.
all_set(container) if {
	requests := container.resources.requests
	limits := container.resources.limits
	is_string(requests.cpu)
	requests.cpu != ""
	is_string(requests.memory)
	requests.memory != ""
	is_string(limits.cpu)
	limits.cpu != ""
	is_string(limits.memory)
	limits.memory != ""
}

# A quantity is set when it is a non-empty string or a number (`cpu: 1`).
quantity(value) if {
	is_string(value)
	value != ""
}

quantity(value) if is_number(value)

# Whether the container sets the quantity at `path` (["requests", "cpu"], ...) under its
# resources. A lookup, not object.get: the engine then hands rego-cpp only the four quantities
# of each container, not the whole container (pushgate.gate.inputpaths).
is_set(container, path) if {
	value := container.resources[path[0]][path[1]]
	quantity(value)
}
