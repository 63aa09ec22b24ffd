-- Argo CD health check for im2txt.dev/Im2txtTraining. Argo CD runs it with gopher-lua (Lua 5.1) in its default
-- sandbox: only the base, table and package libraries are open (no string, math, io or os), so this script uses
-- none of them: numbers are floored with x - x % 1 and joined with `..`.
-- Installed by argocd-cm.yaml (key resource.customizations.health.im2txt.dev_Im2txtTraining), generated from this
-- file by `make manifests`. Health:
--   Degraded     the Stalled condition is True (a stage failed for good, or something only the user can fix
--                blocks it: a missing Secret or claim, a Job the API server refused), or phase Failed
--   Healthy      phase Succeeded
--   Suspended    phase Suspended
--   Progressing  no status yet, a status of an older generation, or phase Running/Pending/Queued (waiting for
--                Kueue, starting, training, retrying, advancing to stage 2)
-- The message says why, or where the training is.
local hs = {}

local function whole(n)
  return n - n % 1
end

local function one_decimal(x)
  local tenths = whole(x * 10 + 0.5)
  local units = whole(tenths / 10)
  return units .. "." .. (tenths - units * 10)
end

local function condition(st, ctype)
  if type(st.conditions) ~= "table" then
    return nil
  end
  for _, c in ipairs(st.conditions) do
    if c.type == ctype then
      return c
    end
  end
  return nil
end

local function non_empty(text)
  return text ~= nil and text ~= ""
end

-- Where a moving training is: what it does (Reconciling's message, else status.message), then step, % and ETA.
local function where(st)
  local text = st.message
  local reconciling = condition(st, "Reconciling")
  if reconciling ~= nil and reconciling.status == "True" and non_empty(reconciling.message) then
    text = reconciling.message
  end
  local parts = {}
  if type(st.step) == "number" then
    local at = "at step " .. whole(st.step)
    if type(st.progress) == "number" then
      at = at .. " (" .. one_decimal(st.progress) .. "%)"
    end
    table.insert(parts, at)
  end
  if non_empty(st.eta) then
    table.insert(parts, "ETA " .. st.eta)
  end
  local progress = table.concat(parts, ", ")
  if not non_empty(text) then
    if type(st.stage) == "number" then
      text = "stage " .. whole(st.stage)
    else
      text = st.phase
    end
  end
  if progress ~= "" then
    text = text .. "; " .. progress
  end
  return text
end

if obj.status == nil or obj.status.phase == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the im2txt operator to report the training's status"
  return hs
end

local st = obj.status
local generation = nil
if obj.metadata ~= nil then
  generation = obj.metadata.generation
end
if generation ~= nil and st.observedGeneration ~= nil and st.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the im2txt operator to observe generation " .. whole(generation)
  return hs
end

local phase = st.phase
local stalled = condition(st, "Stalled")
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  if non_empty(stalled.message) then
    hs.message = stalled.message
  elseif non_empty(st.message) then
    hs.message = st.message
  else
    hs.message = phase
  end
  return hs
end

if phase == "Failed" then
  hs.status = "Degraded"
  local failed = condition(st, "Failed")
  if non_empty(st.message) then
    hs.message = st.message
  elseif failed ~= nil and non_empty(failed.message) then
    hs.message = failed.message
  else
    hs.message = phase
  end
elseif phase == "Succeeded" or phase == "Suspended" then
  if phase == "Succeeded" then
    hs.status = "Healthy"
  else
    hs.status = "Suspended"
  end
  if non_empty(st.message) then
    hs.message = st.message
  else
    hs.message = phase
  end
elseif phase == "Running" or phase == "Pending" or phase == "Queued" then
  hs.status = "Progressing"
  hs.message = where(st)
else
  hs.status = "Unknown"
  hs.message = "Unknown phase " .. tostring(phase)
end
return hs
