"""Builds the shipped task files (data/tasks/*.jsonl) from the word lists below, written for this project.

Run: python data/tasks/build_tasks.py  (deterministic; the JSONL files are what the workbench reads).
"""
import json
import pathlib
import random
import re

OUT = pathlib.Path(__file__).resolve().parent
OUT.mkdir(parents=True, exist_ok=True)

def pairs(text):
    rows = []
    for line in text.strip().splitlines():
        for chunk in line.split("|"):
            chunk = chunk.strip()
            if not chunk:
                continue
            left, right = chunk.split(":")
            rows.append((left.strip(), right.strip()))
    seen, out = set(), []
    for left, right in rows:
        if left in seen:
            print("dup input", left)
            continue
        seen.add(left)
        out.append((left, right))
    return out

def write(name, rows, choices=None):
    with open(OUT / f"{name}.jsonl", "w") as f:
        for row in rows:
            item = {"input": row[0], "answer": row[1]}
            if choices:
                item["choices"] = choices
            f.write(json.dumps(item, ensure_ascii=False) + "\n")
    print(name, len(rows), len({r[1] for r in rows}), "distinct answers")

ANTONYMS = """
hot:cold|big:small|up:down|fast:slow|happy:sad|dark:light|long:short|high:low|old:young|rich:poor
strong:weak|early:late|full:empty|hard:soft|wet:dry|clean:dirty|thick:thin|loud:quiet|heavy:light|win:lose
buy:sell|give:take|push:pull|true:false|good:bad|left:right|inside:outside|above:below|before:after|friend:enemy
love:hate|day:night|black:white|north:south|east:west|begin:end|alive:dead|wide:narrow|deep:shallow|brave:cowardly
cheap:expensive|safe:dangerous|easy:difficult|first:last|near:far|increase:decrease|accept:reject|arrive:depart|asleep:awake|always:never
absent:present|ancient:modern|add:subtract|attack:defend|beautiful:ugly|best:worst|bottom:top|borrow:lend|careful:careless|come:go
correct:wrong|cruel:kind|entrance:exit|float:sink|forget:remember|front:back|generous:selfish|guilty:innocent|healthy:sick|import:export
include:exclude|inner:outer|laugh:cry|less:more|major:minor|maximum:minimum|question:answer|rough:smooth|sharp:dull|simple:complex
smile:frown|sunrise:sunset|tight:loose|visible:invisible|wild:tame|wise:foolish|vertical:horizontal|victory:defeat|upper:lower|private:public
positive:negative|polite:rude|male:female|dawn:dusk|success:failure|solid:liquid|on:off|in:out|yes:no|boy:girl
king:queen|man:woman|summer:winter|sweet:bitter|odd:even|lost:found|same:different|tall:short|open:closed|rise:fall
"""
CAPITALS = """
France:Paris|Germany:Berlin|Italy:Rome|Spain:Madrid|Portugal:Lisbon|Japan:Tokyo|China:Beijing|Russia:Moscow|Egypt:Cairo|Kenya:Nairobi
Canada:Ottawa|Mexico:Mexico City|Brazil:Brasilia|Argentina:Buenos Aires|Chile:Santiago|Peru:Lima|Colombia:Bogota|Venezuela:Caracas|Ecuador:Quito|Uruguay:Montevideo
Paraguay:Asuncion|Cuba:Havana|Jamaica:Kingston|Ireland:Dublin|Norway:Oslo|Sweden:Stockholm|Finland:Helsinki|Denmark:Copenhagen|Iceland:Reykjavik|Poland:Warsaw
Austria:Vienna|Hungary:Budapest|Greece:Athens|Turkey:Ankara|Belgium:Brussels|Netherlands:Amsterdam|Switzerland:Bern|Czech Republic:Prague|Slovakia:Bratislava|Romania:Bucharest
Bulgaria:Sofia|Serbia:Belgrade|Croatia:Zagreb|Slovenia:Ljubljana|Ukraine:Kyiv|Belarus:Minsk|Lithuania:Vilnius|Latvia:Riga|Estonia:Tallinn|Albania:Tirana
India:New Delhi|Pakistan:Islamabad|Bangladesh:Dhaka|Nepal:Kathmandu|Sri Lanka:Colombo|Afghanistan:Kabul|Iran:Tehran|Iraq:Baghdad|Syria:Damascus|Lebanon:Beirut
Jordan:Amman|Saudi Arabia:Riyadh|Qatar:Doha|Oman:Muscat|Yemen:Sanaa|Thailand:Bangkok|Vietnam:Hanoi|Cambodia:Phnom Penh|Laos:Vientiane|Malaysia:Kuala Lumpur
Indonesia:Jakarta|Philippines:Manila|South Korea:Seoul|North Korea:Pyongyang|Mongolia:Ulaanbaatar|Australia:Canberra|New Zealand:Wellington|Fiji:Suva|Nigeria:Abuja|Ghana:Accra
Ethiopia:Addis Ababa|Morocco:Rabat|Algeria:Algiers|Tunisia:Tunis|Libya:Tripoli|Sudan:Khartoum|Uganda:Kampala|Rwanda:Kigali|Senegal:Dakar|Mali:Bamako
Niger:Niamey|Zambia:Lusaka|Zimbabwe:Harare|Angola:Luanda|Namibia:Windhoek|Botswana:Gaborone|Mozambique:Maputo|Madagascar:Antananarivo|Somalia:Mogadishu|Cameroon:Yaounde
Georgia:Tbilisi|Armenia:Yerevan|Azerbaijan:Baku|Uzbekistan:Tashkent|Panama:Panama City|Honduras:Tegucigalpa|Nicaragua:Managua|Guatemala:Guatemala City|United Kingdom:London|United States:Washington
Cyprus:Nicosia|Malta:Valletta|Moldova:Chisinau|Bhutan:Thimphu|Kyrgyzstan:Bishkek|Tajikistan:Dushanbe|Turkmenistan:Ashgabat|Haiti:Port-au-Prince|Bahrain:Manama|Liberia:Monrovia
Sierra Leone:Freetown|Gabon:Libreville|Malawi:Lilongwe|Eritrea:Asmara|Costa Rica:San Jose|El Salvador:San Salvador|Dominican Republic:Santo Domingo|Kuwait:Kuwait City|North Macedonia:Skopje|Bosnia and Herzegovina:Sarajevo
"""
CURRENCY = """
United States:dollar|Canada:dollar|Australia:dollar|New Zealand:dollar|Singapore:dollar|Jamaica:dollar|Fiji:dollar|Namibia:dollar|Liberia:dollar|Taiwan:dollar
Hong Kong:dollar|Germany:euro|France:euro|Italy:euro|Spain:euro|Portugal:euro|Ireland:euro|Netherlands:euro|Belgium:euro|Austria:euro
Finland:euro|Greece:euro|Slovakia:euro|Slovenia:euro|Estonia:euro|Latvia:euro|Lithuania:euro|Luxembourg:euro|Malta:euro|Cyprus:euro
Croatia:euro|Japan:yen|China:yuan|India:rupee|Pakistan:rupee|Nepal:rupee|Sri Lanka:rupee|Mauritius:rupee|Indonesia:rupiah|United Kingdom:pound
Egypt:pound|Lebanon:pound|Syria:pound|Sudan:pound|South Sudan:pound|Russia:ruble|Belarus:ruble|Mexico:peso|Argentina:peso|Chile:peso
Colombia:peso|Cuba:peso|Philippines:peso|Uruguay:peso|Dominican Republic:peso|Switzerland:franc|Rwanda:franc|Burundi:franc|Guinea:franc|Djibouti:franc
Sweden:krona|Norway:krone|Denmark:krone|Iceland:krona|Czech Republic:koruna|Poland:zloty|Hungary:forint|Romania:leu|Moldova:leu|Bulgaria:lev
Turkey:lira|Brazil:real|South Africa:rand|Nigeria:naira|Ghana:cedi|Kenya:shilling|Uganda:shilling|Tanzania:shilling|Somalia:shilling|South Korea:won
North Korea:won|Thailand:baht|Vietnam:dong|Malaysia:ringgit|Bangladesh:taka|Israel:shekel|Saudi Arabia:riyal|Qatar:riyal|Iran:rial|Oman:rial
Yemen:rial|Kuwait:dinar|Iraq:dinar|Jordan:dinar|Bahrain:dinar|Libya:dinar|Tunisia:dinar|Algeria:dinar|Serbia:dinar|Morocco:dirham
United Arab Emirates:dirham|Ukraine:hryvnia|Georgia:lari|Armenia:dram|Kazakhstan:tenge|Mongolia:tugrik|Peru:sol|Venezuela:bolivar|Bolivia:boliviano|Paraguay:guarani
Costa Rica:colon|Guatemala:quetzal|Honduras:lempira|Nicaragua:cordoba|Panama:balboa|Haiti:gourde|Ethiopia:birr|Zambia:kwacha|Malawi:kwacha|Angola:kwanza
Botswana:pula|Cambodia:riel|Laos:kip|Myanmar:kyat|Afghanistan:afghani|Albania:lek|Azerbaijan:manat|Turkmenistan:manat|Uzbekistan:som|Kyrgyzstan:som
"""
FRENCH = """
dog:chien|cat:chat|house:maison|water:eau|bread:pain|apple:pomme|book:livre|car:voiture|tree:arbre|sun:soleil
moon:lune|star:étoile|sea:mer|fire:feu|bird:oiseau|fish:poisson|horse:cheval|cow:vache|milk:lait|cheese:fromage
wine:vin|coffee:café|tea:thé|sugar:sucre|salt:sel|egg:œuf|meat:viande|chicken:poulet|door:porte|window:fenêtre
table:table|chair:chaise|bed:lit|city:ville|street:rue|school:école|church:église|friend:ami|mother:mère|father:père
brother:frère|sister:sœur|child:enfant|man:homme|woman:femme|king:roi|queen:reine|hand:main|head:tête|eye:œil
mouth:bouche|nose:nez|heart:cœur|foot:pied|red:rouge|blue:bleu|green:vert|black:noir|white:blanc|yellow:jaune
one:un|two:deux|three:trois|four:quatre|five:cinq|six:six|seven:sept|eight:huit|nine:neuf|ten:dix
day:jour|night:nuit|week:semaine|year:année|time:temps|morning:matin|evening:soir|summer:été|winter:hiver|spring:printemps
love:amour|war:guerre|peace:paix|money:argent|work:travail|country:pays|world:monde|sky:ciel|rain:pluie|snow:neige
flower:fleur|garden:jardin|mountain:montagne|river:rivière|island:île|forest:forêt|beach:plage|boat:bateau|train:train|plane:avion
big:grand|small:petit|good:bon|new:nouveau|old:vieux|hot:chaud|cold:froid|happy:heureux|beautiful:beau|strong:fort
"""
SPANISH = """
dog:perro|cat:gato|house:casa|water:agua|bread:pan|apple:manzana|book:libro|car:coche|tree:árbol|sun:sol
moon:luna|star:estrella|sea:mar|fire:fuego|bird:pájaro|fish:pez|horse:caballo|cow:vaca|milk:leche|cheese:queso
wine:vino|coffee:café|sugar:azúcar|salt:sal|egg:huevo|meat:carne|chicken:pollo|door:puerta|window:ventana|table:mesa
chair:silla|bed:cama|city:ciudad|street:calle|school:escuela|church:iglesia|friend:amigo|mother:madre|father:padre|brother:hermano
sister:hermana|child:niño|man:hombre|woman:mujer|king:rey|queen:reina|hand:mano|head:cabeza|eye:ojo|mouth:boca
nose:nariz|heart:corazón|foot:pie|red:rojo|blue:azul|green:verde|black:negro|white:blanco|yellow:amarillo|one:uno
two:dos|three:tres|four:cuatro|five:cinco|six:seis|seven:siete|eight:ocho|nine:nueve|ten:diez|day:día
night:noche|week:semana|year:año|time:tiempo|morning:mañana|summer:verano|winter:invierno|love:amor|war:guerra|peace:paz
money:dinero|work:trabajo|country:país|world:mundo|sky:cielo|rain:lluvia|snow:nieve|flower:flor|garden:jardín|mountain:montaña
river:río|island:isla|forest:bosque|beach:playa|boat:barco|train:tren|plane:avión|big:grande|small:pequeño|good:bueno
new:nuevo|old:viejo|hot:caliente|cold:frio|happy:feliz|beautiful:hermoso|strong:fuerte|dance:bailar|eat:comer|drink:beber
"""
PLURAL = """
cat:cats|dog:dogs|house:houses|car:cars|book:books|tree:trees|bird:birds|apple:apples|chair:chairs|table:tables
box:boxes|bus:buses|glass:glasses|dish:dishes|church:churches|watch:watches|fox:foxes|brush:brushes|kiss:kisses|class:classes
baby:babies|city:cities|lady:ladies|party:parties|story:stories|family:families|country:countries|berry:berries|puppy:puppies|body:bodies
boy:boys|day:days|key:keys|toy:toys|monkey:monkeys|knife:knives|wife:wives|leaf:leaves|wolf:wolves|half:halves
shelf:shelves|loaf:loaves|thief:thieves|man:men|woman:women|child:children|foot:feet|tooth:teeth|mouse:mice|goose:geese
person:people|ox:oxen|potato:potatoes|tomato:tomatoes|hero:heroes|echo:echoes|photo:photos|piano:pianos|radio:radios|video:videos
cactus:cacti|fungus:fungi|crisis:crises|analysis:analyses|phenomenon:phenomena|sheep:sheep|deer:deer|fish:fish|series:series|species:species
pen:pens|cup:cups|hat:hats|bed:beds|door:doors|window:windows|flower:flowers|river:rivers|mountain:mountains|girl:girls
horse:horses|rose:roses|page:pages|bridge:bridges|nose:noses|lion:lions|tiger:tigers|student:students|teacher:teachers|friend:friends
dress:dresses|bench:benches|match:matches|tax:taxes|wish:wishes|lunch:lunches|army:armies|fly:flies|cherry:cherries|lily:lilies
"""
PAST = """
walk:walked|talk:talked|jump:jumped|play:played|work:worked|cook:cooked|clean:cleaned|open:opened|call:called|help:helped
watch:watched|wash:washed|listen:listened|look:looked|start:started|want:wanted|need:needed|live:lived|love:loved|like:liked
dance:danced|smile:smiled|move:moved|close:closed|hope:hoped|stop:stopped|plan:planned|drop:dropped|cry:cried|try:tried
study:studied|carry:carried|go:went|eat:ate|see:saw|take:took|give:gave|come:came|run:ran|write:wrote
read:read|speak:spoke|drink:drank|sing:sang|swim:swam|begin:began|break:broke|bring:brought|buy:bought|think:thought
teach:taught|catch:caught|fight:fought|find:found|make:made|say:said|tell:told|sell:sold|sit:sat|stand:stood
sleep:slept|keep:kept|feel:felt|leave:left|meet:met|send:sent|spend:spent|build:built|lose:lost|hold:held
know:knew|grow:grew|throw:threw|fly:flew|draw:drew|drive:drove|ride:rode|rise:rose|choose:chose|forget:forgot
get:got|win:won|hear:heard|pay:paid|wear:wore|tear:tore|steal:stole|freeze:froze|wake:woke|shake:shook
fall:fell|hide:hid|bite:bit|feed:fed|lead:led|shoot:shot|dig:dug|hang:hung|ring:rang|do:did
jog:jogged|paint:painted|visit:visited|climb:climbed|laugh:laughed|rain:rained|learn:learned|follow:followed|travel:traveled|answer:answered
"""
COLOURS = """
banana:yellow|lemon:yellow|sun:yellow|corn:yellow|butter:yellow|canary:yellow|sunflower:yellow|egg yolk:yellow|school bus:yellow|dandelion:yellow
grass:green|leaf:green|lime:green|frog:green|cucumber:green|broccoli:green|spinach:green|pea:green|lettuce:green|emerald:green
sky:blue|ocean:blue|sapphire:blue|blueberry:blue|bluebird:blue|denim:blue|tomato:red|strawberry:red|cherry:red|blood:red
ruby:red|fire truck:red|ladybug:red|raspberry:red|stop sign:red|snow:white|milk:white|cloud:white|cotton:white|sugar:white
salt:white|swan:white|polar bear:white|rice:white|paper:white|coal:black|crow:black|night:black|ink:black|raven:black
tar:black|panther:black|soot:black|licorice:black|orange:orange|carrot:orange|pumpkin:orange|tangerine:orange|apricot:orange|goldfish:orange
traffic cone:orange|chocolate:brown|coffee:brown|soil:brown|bark:brown|wood:brown|acorn:brown|cinnamon:brown|walnut:brown|grizzly bear:brown
flamingo:pink|bubblegum:pink|piglet:pink|cotton candy:pink|pig:pink|lilac:purple|eggplant:purple|lavender:purple|plum:purple|violet:purple
amethyst:purple|elephant:grey|ash:grey|concrete:grey|pebble:grey|rain cloud:grey|steel:grey|rhino:grey|dolphin:grey|taxi:yellow
chalk:white|pearl:white|tooth:white|charcoal:black|tire:black|cranberry:red|mustard:yellow|jade:green|jeans:blue|mud:brown
gingerbread:brown|sea:blue
"""
YOUNG = """
cat:kitten|dog:puppy|cow:calf|horse:foal|sheep:lamb|goat:kid|pig:piglet|duck:duckling|goose:gosling|swan:cygnet
lion:cub|tiger:cub|bear:cub|wolf:pup|fox:kit|kangaroo:joey|koala:joey|wallaby:joey|deer:fawn|frog:tadpole
owl:owlet|eagle:eaglet|hen:chick|chicken:chick|penguin:chick|ostrich:chick|elephant:calf|whale:calf|dolphin:calf|giraffe:calf
camel:calf|hippo:calf|rhino:calf|buffalo:calf|moose:calf|bison:calf|seal:pup|rat:pup|mouse:pup|hamster:pup
bat:pup|otter:pup|beaver:kit|rabbit:kit|ferret:kit|skunk:kit|leopard:cub|cheetah:cub|jaguar:cub|panda:cub
hyena:cub|donkey:foal|zebra:foal|pony:foal|butterfly:caterpillar|moth:caterpillar|fly:maggot|mosquito:larva|salmon:fry|trout:fry
turkey:poult|pigeon:squab|dove:squab|hawk:eyas|falcon:eyas|peacock:peachick|spider:spiderling|eel:elver|oyster:spat|toad:tadpole
antelope:calf|yak:calf|ox:calf|llama:cria|alpaca:cria|gorilla:infant|chimpanzee:infant|monkey:infant|hare:leveret|squirrel:kit
walrus:calf|manatee:calf|shark:pup|platypus:puggle|echidna:puggle|swine:piglet|boar:piglet|mare:foal|cod:codling|partridge:cheeper
quail:chick|parrot:chick|crane:chick|pheasant:chick|coyote:pup|jackal:pup|mink:kit|badger:cub|raccoon:kit|lynx:kitten
"""

write("antonyms", pairs(ANTONYMS))
write("country_capital", pairs(CAPITALS))
write("country_currency", pairs(CURRENCY))
write("english_french", pairs(FRENCH))
write("english_spanish", pairs(SPANISH))
write("singular_plural", pairs(PLURAL))
write("present_past", pairs(PAST))
write("object_colour", pairs(COLOURS))
write("animal_young", pairs(YOUNG))

WORDS = sorted({w for text in (ANTONYMS, PLURAL, PAST) for w in re.findall(r"[a-z]+", text) if len(w) >= 3})
rng = random.Random(0)
upper_words = rng.sample(WORDS, 120)
write("lowercase_uppercase", [(w, w.upper()) for w in upper_words])
first_words = rng.sample(WORDS, 120)
write("word_first_letter", [(w, w[0]) for w in first_words])
write("number_successor", [(str(n), str(n + 1)) for n in rng.sample(range(1, 400), 120)])

# Other correct answers, never offered as distractors for that item.
ALIASES = {
    "animal_young": {"wolf": ["cub"], "fox": ["cub"], "rabbit": ["kitten", "bunny"], "squirrel": ["kitten"],
                     "lynx": ["kit", "cub"],
                     "frog": ["froglet"], "toad": ["froglet"], "salmon": ["alevin", "parr"], "crane": ["colt"],
                     "hyena": ["pup"],
                     "fly": ["larva"], "butterfly": ["larva"], "moth": ["larva"], "mosquito": ["wriggler"],
                     "otter": ["kit", "cub"],
                     "beaver": ["pup"], "raccoon": ["cub"], "skunk": ["kitten"], "seal": ["calf"], "eagle": ["eyas"],
                     "cod": ["fry"],
                     "bat": ["kit"], "mink": ["cub"], "badger": ["kit"], "coyote": ["cub"], "jackal": ["cub"],
                     "ferret": ["kitten"]},
    "antonyms": {"sunrise": ["dusk"], "dawn": ["sunset", "night"], "rise": ["sink", "set"], "big": ["little"],
                 "tall": ["small"],
                 "dark": ["bright"], "day": ["dark"], "begin": ["finish"], "up": ["below"], "above": ["down"],
                 "high": ["lower"], "in": ["outside"],
                 "inside": ["out"], "on": ["off"], "old": ["new"], "loud": ["silent"]},
}
for task, table in ALIASES.items():
    path = OUT / f"{task}.jsonl"
    items = [json.loads(line) for line in path.read_text().splitlines()]
    for item in items:
        if item["input"] in table:
            item["aliases"] = table[item["input"]]
    path.write_text("".join(json.dumps(item, ensure_ascii=False) + "\n" for item in items))
POSITIVE = """The film was a delight from start to finish.
I loved every minute of this concert.
The staff were friendly and very helpful.
This is the best pizza I have ever eaten.
What a wonderful surprise party!
The hotel room was spotless and comfortable.
Our trip to the coast was fantastic.
The new phone works perfectly.
She gave a brilliant speech tonight.
The soup was warm and delicious.
I am thrilled with my new bike.
The garden looks beautiful in spring.
This book made me smile all week.
The service at the cafe was excellent.
What a lovely, sunny afternoon.
The kids had a great time at the park.
His painting is simply stunning.
I enjoyed the museum tour very much.
The team played an amazing game.
This chair is cozy and well made.
The teacher was patient and kind.
My new shoes are so comfortable.
The movie had a happy and uplifting ending.
Dinner was tasty and the dessert was perfect.
I adore this little village.
The app is fast and easy to use.
We had a fun and relaxing weekend.
The flowers smell wonderful.
Her new song is catchy and joyful.
The repair was quick and the price was fair.
This is a charming and cheerful story.
The puppy is adorable and sweet.
I am grateful for such good friends.
The view from the hill was breathtaking.
The show was clever and hilarious.
Our neighbours are warm and welcoming.
The cake was moist and full of flavour.
The lecture was inspiring and clear.
I highly recommend this restaurant.
The game is exciting and beautifully designed.
The beach was clean and peaceful.
This jacket is warm and looks great.
The nurse was gentle and caring.
The festival was a joyful celebration.
The coffee here is rich and smooth.
I felt proud of my little brother today.
The hike was refreshing and fun.
The music lifted my mood instantly.
The new library is bright and inviting.
This was a perfect day.
The guide was knowledgeable and friendly.
The tomatoes from the market are fresh and sweet.
I love how easy this recipe is.
The ending of the novel was satisfying.
Everyone praised the excellent performance.
The bakery makes the most wonderful bread.""".splitlines()
NEGATIVE = """The film was dull and far too long.
I hated every minute of this concert.
The staff were rude and unhelpful.
This is the worst pizza I have ever eaten.
What a terrible way to spend an evening.
The hotel room was dirty and noisy.
Our trip to the coast was a disaster.
The new phone broke after one day.
She gave a boring and confusing speech.
The soup was cold and bland.
I am disappointed with my new bike.
The garden looks dead and neglected.
This book made me angry and bored.
The service at the cafe was awful.
What a miserable, rainy afternoon.
The kids were upset and cried at the park.
His painting is ugly and careless.
I regret visiting that museum.
The team played a dreadful game.
This chair is uncomfortable and wobbly.
The teacher was impatient and unfair.
My new shoes hurt my feet.
The movie had a sad and depressing ending.
Dinner was greasy and the dessert was stale.
I cannot stand this gloomy village.
The app is slow and keeps crashing.
We had a stressful and exhausting weekend.
The room smells horrible.
Her new song is annoying and repetitive.
The repair took weeks and cost far too much.
This is a tedious and pointless story.
The dog is aggressive and loud.
I feel lonely and let down by my friends.
The view was blocked by an ugly wall.
The show was stupid and painful to watch.
Our neighbours are hostile and cold.
The cake was dry and tasteless.
The lecture was confusing and dull.
I would never recommend this restaurant.
The game is frustrating and badly designed.
The beach was filthy and crowded.
This jacket is thin and falls apart.
The nurse was careless and rude.
The festival was a chaotic mess.
The coffee here is bitter and burnt.
I felt ashamed and embarrassed today.
The hike was exhausting and miserable.
The music gave me a headache.
The new library is dark and cramped.
This was a horrible day.
The guide was late and clueless.
The tomatoes from the market were rotten.
I hate how complicated this recipe is.
The ending of the novel was awful.
Everyone complained about the poor performance.
The bakery sells stale and overpriced bread.""".splitlines()
SPORTS = """The striker scored twice in the second half.
She won the marathon in record time.
The referee showed him a red card.
Our team lost the final on penalties.
He hit a home run in the ninth inning.
The tennis match went to five sets.
The swimmer broke the world record.
The coach called a timeout late in the game.
The goalkeeper saved three shots.
The cyclist crossed the finish line first.
The boxer was knocked out in round four.
They play basketball every Saturday.
The golfer made a hole in one.
The league season starts next month.
The sprinter false started and was disqualified.
He trains at the gym before every match.
The fans cheered when the ball hit the net.
She serves the ball at great speed.
The quarterback threw a long pass.
The skier raced down the slope.
The wrestler pinned his opponent.
The rugby team scored a late try.
Our club signed a new midfielder.
The umpire called the batter out.
The rowers trained on the lake at dawn.
The championship trophy was raised by the captain.
The runner won a gold medal.
The hockey player scored on a breakaway.
The volleyball team won the tournament.
The jockey rode the horse to victory.""".splitlines()
FOOD = """Add the onions and fry them until golden.
This soup needs more salt and pepper.
She baked a chocolate cake for dessert.
The pasta is cooked in boiling water.
We ordered sushi and green tea.
Slice the bread and spread the butter.
The curry was spicy and full of flavour.
Whisk the eggs with a little milk.
He grilled the fish with lemon.
The salad has tomatoes, cucumber and olives.
Roast the chicken for one hour.
The pancakes were served with maple syrup.
Stir the rice until it is creamy.
The chef chopped the garlic finely.
I had cereal with milk for breakfast.
The pie crust was crisp and buttery.
Season the steak before cooking it.
We shared a large pizza with mushrooms.
Melt the chocolate over low heat.
The stew simmered for three hours.
Peel the potatoes and boil them.
She made fresh orange juice.
The cookies came out of the oven warm.
Sprinkle cheese on top of the lasagne.
The noodles were tossed with soy sauce.
Mix the flour, sugar and eggs in a bowl.
The sandwich had ham and cheese.
He steamed the vegetables for dinner.
The yogurt was topped with honey and nuts.
Knead the dough and let it rise.""".splitlines()
WEATHER = """Heavy rain is expected tomorrow morning.
It will be sunny and warm all weekend.
Strong winds knocked down several trees.
Snow is falling across the mountains.
The forecast says a storm is coming.
Temperatures will drop below freezing tonight.
A thick fog covered the valley at dawn.
Thunder and lightning lasted all night.
The afternoon will be cloudy with light showers.
A heat wave is hitting the south.
The sky cleared after the rain.
Hail damaged cars in the town.
It is humid and sticky today.
A hurricane is approaching the coast.
Frost covered the fields this morning.
The wind will calm down by evening.
Expect drizzle and grey skies on Monday.
A blizzard closed the roads.
The rainy season begins in June.
There is a chance of showers later.
The tornado warning was lifted.
It has been a dry summer with little rain.
Clouds are gathering over the hills.
The temperature reached forty degrees.
Icy roads are expected overnight.
A rainbow appeared after the storm.
The breeze is cool near the sea.
Snowfall will be heavy in the north.
The mild weather will continue this week.
Gusty winds and rain will spread east.""".splitlines()
TECH = """The new laptop has a faster processor.
Update the app to fix the security bug.
She wrote a program in Python.
The website crashed under heavy traffic.
He installed more memory in his computer.
The phone battery lasts two days.
The company released a new operating system.
Restart the router to restore the internet.
The software update added new features.
Engineers are testing the robot.
The database stores millions of records.
Type your password to log in.
The printer is not connected to the network.
They built a mobile game for tablets.
The server is running out of disk space.
The keyboard has a backlight.
Save the file before closing the editor.
The chip uses very little power.
The developer fixed a bug in the code.
The smart watch tracks your heart rate.
Download the latest version of the browser.
The cloud service backs up your photos.
The screen resolution is very high.
A virus infected the old computer.
The algorithm sorts the list quickly.
Plug the cable into the USB port.
The camera app uses machine learning.
The email server was down for an hour.
The hard drive failed and lost data.
The programmer compiled the source code.""".splitlines()

def classify_rows():
    import json
    import pathlib
    out = pathlib.Path(__file__).resolve().parent
    with open(out / "sentiment.jsonl", "w") as f:
        rows = [(s, "positive") for s in POSITIVE] + [(s, "negative") for s in NEGATIVE]
        import random
        random.Random(1).shuffle(rows)
        for s, a in rows:
            f.write(json.dumps({"input": s, "choices": ["positive", "negative"], "answer": a}) + "\n")
    print("sentiment", len(rows))
    topics = ["sports", "food", "weather", "technology"]
    rows = [(s, "sports") for s in SPORTS] + [(s, "food") for s in FOOD] + [(s, "weather")
                                                                            for s in WEATHER] + [(s, "technology")
                                                                                                 for s in TECH]
    random.Random(2).shuffle(rows)
    with open(out / "topic.jsonl", "w") as f:
        for s, a in rows:
            f.write(json.dumps({"input": s, "choices": topics, "answer": a}) + "\n")
    print("topic", len(rows))


classify_rows()
