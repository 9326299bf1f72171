-- Argo CD health of an ImageChannel (goldenimage.io/v1alpha1): a pointer at one validated
-- version, and its publication.
-- Ready=False while the channel has never pointed anywhere and nothing is wrong with the
-- channel itself (no usable version yet, an upstream channel still empty) is on its way; any
-- other Ready=False, and a failed publication, needs someone to act. spec.suspend stops the
-- pointer on purpose: Suspended, unless something is wrong.
-- Argo CD runs this without Lua's string library: reasons are compared whole.
local WAITING = {NoVersion = true, NoValidatedVersion = true, UpstreamEmpty = true}

local hs = {status = "Progressing", message = ""}
local generation = obj.metadata.generation
local status = obj.status
if type(status) ~= "table" then
  hs.message = "waiting for the operator"
  return hs
end

local ready = nil
local published = nil
if type(status.conditions) == "table" then
  for _, condition in ipairs(status.conditions) do
    if type(condition) == "table" and condition.type == "Ready" then
      ready = condition
    elseif type(condition) == "table" and condition.type == "Published" then
      published = condition
    end
  end
end

-- A status written for an older spec says nothing about the current one.
if type(generation) == "number" then
  local observed = status.observedGeneration
  if ready ~= nil and type(ready.observedGeneration) == "number" and ready.observedGeneration < generation then
    observed = ready.observedGeneration
  end
  if type(observed) ~= "number" or observed < generation then
    hs.message = "waiting for the operator to observe generation " .. generation
    return hs
  end
end
if ready == nil then
  hs.message = "waiting for the operator to report Ready"
  return hs
end

local function text(condition)
  if type(condition.message) == "string" then
    return condition.message
  end
  return ""
end

-- A channel that pointed somewhere before (history) and points nowhere now has lost its
-- pointer: consumers have no image, whatever the reason.
local pointed = type(status.current) == "table" or (type(status.history) == "table" and status.history[1] ~= nil)
local waiting = ready.status == "False" and WAITING[ready.reason] == true and not pointed
local suspended = type(obj.spec) == "table" and obj.spec.suspend == true

hs.message = text(ready)
if ready.status == "False" and not waiting then
  hs.status = "Degraded"
elseif published ~= nil and published.status == "False" and published.reason ~= "Publishing" then
  hs.status = "Degraded"
  hs.message = text(published)
elseif suspended then
  hs.status = "Suspended"
elseif ready.status ~= "True" then
  hs.status = "Progressing"
elseif published ~= nil and published.status ~= "True" then
  hs.status = "Progressing"
  hs.message = text(published)
else
  hs.status = "Healthy"
end
return hs
