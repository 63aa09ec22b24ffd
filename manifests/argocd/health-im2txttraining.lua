-- Argo CD health check for im2txt.dev/Im2txtTraining (Lua 5.1, as Argo CD's gopher-lua runs it).
-- Installed by argocd-cm.yaml (key resource.customizations.health.im2txt.dev_Im2txtTraining); tests keep the two
-- identical. status.phase -> health: Succeeded Healthy, Pending/Running Progressing, Failed Degraded,
-- Suspended Suspended; no status yet -> Progressing. The message says where the training is.
local hs = {}

local function whole(n)
  return string.format("%d", math.floor(n))
end

local function describe(st)
  local parts = {}
  if st.stage ~= nil then
    table.insert(parts, "stage " .. whole(st.stage))
  end
  if st.step ~= nil and st.target ~= nil then
    table.insert(parts, "step " .. whole(st.step) .. "/" .. whole(st.target))
  elseif st.step ~= nil then
    table.insert(parts, "step " .. whole(st.step))
  end
  if st.progress ~= nil then
    table.insert(parts, string.format("%.1f%%", st.progress))
  end
  if st.eta ~= nil and st.eta ~= "" then
    table.insert(parts, "ETA " .. st.eta)
  end
  local text = table.concat(parts, ", ")
  if st.message ~= nil and st.message ~= "" then
    if text ~= "" then
      text = text .. ": " .. st.message
    else
      text = st.message
    end
  end
  return text
end

local function condition_message(st, ctype)
  if st.conditions == nil then
    return nil
  end
  for _, c in ipairs(st.conditions) do
    if c.type == ctype and c.status == "True" and c.message ~= nil and c.message ~= "" then
      return c.message
    end
  end
  return nil
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
if phase == "Succeeded" then
  hs.status = "Healthy"
elseif phase == "Running" or phase == "Pending" then
  hs.status = "Progressing"
elseif phase == "Failed" then
  hs.status = "Degraded"
elseif phase == "Suspended" then
  hs.status = "Suspended"
else
  hs.status = "Unknown"
  hs.message = "Unknown phase " .. tostring(phase)
  return hs
end

local text = describe(st)
if phase == "Failed" and (st.message == nil or st.message == "") then
  local reason = condition_message(st, "Failed")
  if reason ~= nil then
    if text ~= "" then
      text = text .. ": " .. reason
    else
      text = reason
    end
  end
end
if text == "" then
  text = phase
else
  text = phase .. ": " .. text
end
hs.message = text
return hs
