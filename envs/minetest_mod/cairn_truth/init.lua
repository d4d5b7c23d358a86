-- cairn_truth: the player's true state, written every server step to measure an agent that
-- sees pixels only (as Crafter's privileged info). It never acts on the game.
--
-- <world>/cairn_truth.json holds one JSON object, replaced atomically (safe_file_write):
-- step, time (the server's monotonic clock, s), gametime, timeofday, name, pos (feet),
-- yaw and pitch (radians), hp, breath, pointed (the node a ray from the eye along the look
-- direction hits within the wielded item's reach: name, under, above, distance; absent when
-- none), wielded, inventory (the main list's non-empty stacks: slot, name, count, groups),
-- dug (nodes the player dug this episode, by name) with dug_groups (the same by group), and
-- near: for each target in the setting cairn_truth_near (comma-separated node names or
-- "group:NAME"), the nearest such node within cairn_truth_near_radius (pos, distance),
-- refreshed when the player moves to another node and every tenth step.

local path = minetest.get_worldpath() .. "/cairn_truth.json"
local reach_setting = tonumber(minetest.settings:get("cairn_truth_reach"))
local step = 0
local near_targets = {}
for target in (minetest.settings:get("cairn_truth_near") or ""):gmatch("[^,%s]+") do
	near_targets[#near_targets + 1] = target
end
local near_radius = tonumber(minetest.settings:get("cairn_truth_near_radius")) or 12
local near, near_center = {}, nil
local dug = {}
local dug_groups = {}

local function vec(p)
	return {x = p.x, y = p.y, z = p.z}
end

local function groups_of(name)
	local names = {}
	local def = minetest.registered_items[name]
	for group, rating in pairs(def and def.groups or {}) do
		if rating ~= 0 then
			names[#names + 1] = group
		end
	end
	return names
end

-- How far the player reaches: the wielded item's range, else the hand's (4 by default).
local function reach_of(player)
	local wielded = player:get_wielded_item()
	local def = not wielded:is_empty() and wielded:get_definition() or nil
	local hand = minetest.registered_items[""]
	return reach_setting or (def and def.range) or (hand and hand.range) or 4
end

local function pointed_node(player)
	local eye = vector.add(player:get_pos(),
		{x = 0, y = player:get_properties().eye_height, z = 0})
	eye = vector.add(eye, vector.divide(player:get_eye_offset(), 10))
	local target = vector.add(eye, vector.multiply(player:get_look_dir(), reach_of(player)))
	for thing in minetest.raycast(eye, target, false, false) do
		if thing.type == "node" then
			return {
				name = minetest.get_node(thing.under).name,
				under = vec(thing.under),
				above = vec(thing.above),
				distance = vector.distance(eye, thing.intersection_point),
			}
		end
	end
	return nil
end

local function inventory(player)
	local stacks = {}
	for index, stack in ipairs(player:get_inventory():get_list("main") or {}) do
		if not stack:is_empty() then
			stacks[#stacks + 1] = {slot = index, name = stack:get_name(),
				count = stack:get_count(), groups = groups_of(stack:get_name())}
		end
	end
	return stacks
end

local function nearest(center)
	local found = {}
	for _, target in ipairs(near_targets) do
		local pos = minetest.find_node_near(center, near_radius, target, true)
		if pos then
			found[target] = {name = minetest.get_node(pos).name, pos = vec(pos),
				distance = vector.distance(center, pos)}
		end
	end
	return found
end

minetest.register_on_dignode(function(pos, oldnode, digger)
	if not digger or not digger:is_player() then
		return
	end
	dug[oldnode.name] = (dug[oldnode.name] or 0) + 1
	for _, group in ipairs(groups_of(oldnode.name)) do
		dug_groups[group] = (dug_groups[group] or 0) + 1
	end
end)

minetest.register_globalstep(function()
	local player = minetest.get_connected_players()[1]
	if not player then
		return
	end
	step = step + 1
	local wielded = player:get_wielded_item()
	local center = vector.round(player:get_pos())
	if #near_targets > 0 and (step % 10 == 1 or not near_center
			or not vector.equals(center, near_center)) then
		near, near_center = nearest(center), center
	end
	local truth = {
		step = step,
		time = minetest.get_us_time() / 1e6,
		gametime = minetest.get_gametime(),
		timeofday = minetest.get_timeofday(),
		name = player:get_player_name(),
		pos = vec(player:get_pos()),
		yaw = player:get_look_horizontal(),
		pitch = player:get_look_vertical(),
		hp = player:get_hp(),
		breath = player:get_breath(),
		pointed = pointed_node(player),
		wielded = {name = wielded:get_name(), count = wielded:get_count()},
		inventory = inventory(player),
		dug = dug,
		dug_groups = dug_groups,
		near = near,
	}
	local text = minetest.write_json(truth)
	if text then
		minetest.safe_file_write(path, text)
	end
end)
