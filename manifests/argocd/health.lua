-- Argo CD health check for whisperft.io/WhisperFineTune.
-- Installed through argocd-cm (see argocd-cm.yaml, generated from this file);
-- tested by tests/unit/test_argocd_health.py. A fine-tune is Healthy once it
-- has Succeeded, Progressing while it plans, queues or trains, Suspended when
-- suspended, and Degraded when it failed or cannot run as written.
local hs = { status = "Progressing", message = "Waiting for the whisperft operator" }

local function condition(status, type)
  if status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == type then
      return c
    end
  end
  return nil
end

local function describe(c, fallback)
  if c ~= nil and c.message ~= nil and c.message ~= "" then
    return c.message
  end
  if c ~= nil and c.reason ~= nil then
    return c.reason
  end
  return fallback
end

local status = obj.status
if status == nil then
  return hs
end

local generation = obj.metadata ~= nil and obj.metadata.generation or nil
if generation ~= nil and status.observedGeneration ~= nil and status.observedGeneration < generation then
  hs.message = "Waiting for the operator to act on generation " .. tostring(generation)
  return hs
end

local failed = condition(status, "Failed")
if status.phase == "Failed" or (failed ~= nil and failed.status == "True") then
  hs.status = "Degraded"
  hs.message = describe(failed, status.message or "Fine-tune failed")
  return hs
end

-- Refused before any GPU was asked for: unknown accelerator, plan does not fit, bad spec.
local planned = condition(status, "Planned")
if planned ~= nil and planned.status == "False" then
  hs.status = "Degraded"
  hs.message = describe(planned, "Fine-tune cannot be scheduled as written")
  return hs
end

if status.phase == "Succeeded" then
  hs.status = "Healthy"
  hs.message = "Fine-tune succeeded"
  if status.progress ~= nil and status.progress.testWerAfter ~= nil then
    hs.message = hs.message .. string.format(" (test WER %.1f%%)", 100 * status.progress.testWerAfter)
  end
  return hs
end

local suspended = condition(status, "Suspended")
if status.phase == "Suspended" or (suspended ~= nil and suspended.status == "True") then
  hs.status = "Suspended"
  hs.message = describe(suspended, "Fine-tune is suspended")
  return hs
end

if status.phase == "Running" then
  hs.message = "Training"
  if status.progressText ~= nil then
    hs.message = hs.message .. ": step " .. status.progressText
  end
  return hs
end

if status.phase ~= nil then
  hs.message = status.message or status.phase
end
return hs
