-- Argo CD health of a GoldenImage (goldenimage.io/v1alpha1): the recipe of an image.
-- Its Ready condition is its newest version's (or says what keeps a new version from being
-- made: a missing ConfigMap, credentials or source image, an invalid spec). Only Building,
-- Validating and Pending are on their way; every other Ready=False reason needs someone to act.
-- Argo CD runs this without Lua's string library: reasons are compared whole.
local IN_PROGRESS = {Building = true, Validating = true, Pending = true}

local hs = {status = "Progressing", message = ""}
local generation = obj.metadata.generation
local status = obj.status
if type(status) ~= "table" then
  hs.message = "waiting for the operator"
  return hs
end

local ready = nil
if type(status.conditions) == "table" then
  for _, condition in ipairs(status.conditions) do
    if type(condition) == "table" and condition.type == "Ready" then
      ready = condition
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

if type(ready.message) == "string" then
  hs.message = ready.message
end
if ready.status == "True" then
  hs.status = "Healthy"
elseif ready.status == "False" and not IN_PROGRESS[ready.reason] then
  hs.status = "Degraded"
end
return hs
