"""Open Images category facts the original's open_images_scene_images_transformer.yaml names:
- `top_300_classes_plus_coco_compatibility`: (class name, box count in the training annotations) of
  the 300 most frequent boxable classes plus those COCO has; the dataset keeps only these names;
- `open_images_unify_categories_for_coco`: label ids merged into another id (e.g. kinds of person
  into Person), so both datasets name the same things alike; the merged-away ids are no category of their own.
The table is kept as text, one `count<TAB>name` per line, most frequent first."""
from __future__ import annotations

open_images_unify_categories_for_coco: dict[str, str] = {
    "/m/03bt1vf": "/m/01g317",
    "/m/04yx4": "/m/01g317",
    "/m/05r655": "/m/01g317",
    "/m/01bl7v": "/m/01g317",
    "/m/0cnyhnx": "/m/01xq0k1",
    "/m/01226z": "/m/018xm",
    "/m/05ctyq": "/m/018xm",
    "/m/058qzx": "/m/04ctx",
    "/m/06pcq": "/m/0l515",
    "/m/03m3pdh": "/m/02crq1",
    "/m/046dlr": "/m/01x3z",
    "/m/0h8mzrc": "/m/01x3z",
}

_TOP_CLASSES = """
1060962	Man
986610	Clothing
748162	Tree
611896	Woman
610294	Person
442948	Human face
175399	Girl
162147	Building
159135	Car
155704	Plant
137073	Human body
133128	Flower
127485	Window
118380	Human arm
114365	House
111684	Wheel
99054	Suit
98089	Human hair
92763	Human head
88624	Chair
79849	Boy
73699	Table
57200	Jeans
55725	Tire
53321	Skyscraper
52400	Food
50335	Footwear
50236	Dress
47124	Human leg
46636	Toy
45605	Tower
43486	Boat
40541	Land vehicle
34646	Bicycle wheel
33729	Palm tree
32914	Fashion accessory
31940	Glasses
31409	Bicycle
30656	Furniture
29643	Sculpture
27558	Bottle
26980	Dog
26796	Snack
26664	Human hand
25791	Bird
25415	Book
24386	Guitar
23998	Jacket
22192	Poster
21284	Dessert
20657	Baked goods
19754	Drink
18588	Flag
18205	Houseplant
17613	Tableware
17218	Airplane
17195	Door
17068	Sports uniform
16865	Shelf
16612	Drum
16542	Vehicle
15269	Microphone
14957	Street light
14879	Cat
13684	Fruit
13536	Fast food
12932	Animal
12534	Vegetable
12358	Train
11948	Horse
11728	Flowerpot
11621	Motorcycle
11517	Fish
11405	Desk
10996	Helmet
10915	Truck
10695	Bus
10532	Hat
10488	Auto part
10303	Musical instrument
10207	Sunglasses
10096	Picture frame
10015	Sports equipment
9999	Shorts
9632	Wine glass
9242	Duck
9032	Wine
8781	Rose
8693	Tie
8436	Butterfly
7978	Beer
7956	Cabinetry
7907	Laptop
7497	Insect
7363	Goggles
7098	Shirt
7021	Dairy Product
7014	Marine invertebrates
7006	Cattle
6903	Trousers
6843	Van
6777	Billboard
6367	Balloon
6103	Human nose
6073	Tent
6014	Camera
6002	Doll
5951	Coat
5758	Mobile phone
5729	Swimwear
5691	Strawberry
5643	Stairs
5599	Goose
5536	Umbrella
5508	Cake
5475	Sun hat
5310	Bench
5163	Bookcase
5140	Bee
5078	Computer monitor
4983	Hiking equipment
4981	Office building
4748	Coffee cup
4685	Curtain
4651	Plate
4621	Box
4595	Tomato
4529	Coffee table
4473	Office supplies
4416	Maple
4365	Muffin
4234	Cocktail
4197	Castle
4134	Couch
3983	Pumpkin
3960	Computer keyboard
3926	Human mouth
3893	Christmas tree
3883	Mushroom
3809	Swimming pool
3799	Pastry
3769	Lavender (Plant)
3732	Football helmet
3648	Bread
3628	Traffic sign
3597	Common sunflower
3550	Television
3525	Bed
3485	Cookie
3484	Fountain
3447	Paddle
3429	Bicycle helmet
3420	Porch
3387	Deer
3339	Fedora
3338	Canoe
3266	Carnivore
3202	Bowl
3166	Human eye
3118	Ball
3077	Pillow
3061	Salad
3060	Beetle
3050	Orange
2958	Drawer
2937	Platter
2921	Elephant
2921	Seafood
2915	Monkey
2879	Countertop
2831	Watercraft
2805	Helicopter
2797	Kitchen appliance
2781	Personal flotation device
2739	Swan
2711	Lamp
2695	Boot
2693	Bronze sculpture
2677	Chicken
2643	Taxi
2615	Juice
2604	Cowboy hat
2600	Apple
2590	Tin can
2564	Necklace
2560	Ice cream
2539	Human beard
2536	Coin
2515	Candle
2512	Cart
2441	High heels
2433	Weapon
2406	Handbag
2396	Penguin
2352	Rifle
2336	Violin
2304	Skull
2285	Lantern
2269	Scarf
2225	Saucer
2215	Sheep
2189	Vase
2180	Lily
2154	Mug
2140	Parrot
2137	Human ear
2115	Sandal
2100	Lizard
2063	Kitchen & dining room table
1977	Spider
1974	Coffee
1926	Goat
1922	Squirrel
1913	Cello
1881	Sushi
1876	Tortoise
1870	Pizza
1864	Studio couch
1862	Barrel
1841	Cosmetics
1841	Moths and butterflies
1817	Convenience store
1792	Watch
1786	Home appliance
1780	Harbor seal
1756	Luggage and bags
1754	Vehicle registration plate
1751	Shrimp
1730	Jellyfish
1723	French fries
1698	Egg (Food)
1697	Football
1683	Musical keyboard
1674	Falcon
1660	Candy
1654	Medical equipment
1651	Eagle
1634	Dinosaur
1630	Surfboard
1628	Tank
1624	Grape
1624	Lion
1622	Owl
1613	Ski
1606	Waste container
1591	Frog
1585	Sparrow
1581	Rabbit
1546	Pen
1537	Sea lion
1521	Spoon
1512	Sink
1507	Teddy bear
1495	Bull
1490	Sofa bed
1479	Dragonfly
1478	Brassiere
1472	Chest of drawers
1466	Aircraft
1463	Human foot
1455	Pig
1454	Fork
1438	Antelope
1427	Tripod
1424	Tool
1422	Cheese
1397	Lemon
1393	Hamburger
1390	Dolphin
1390	Mirror
1387	Marine mammal
1385	Giraffe
1368	Snake
1364	Gondola
1360	Wheelchair
1358	Piano
1348	Cupboard
1345	Banana
1335	Trumpet
1333	Lighthouse
1317	Invertebrate
1268	Carrot
1260	Sock
1241	Tiger
1224	Camel
1224	Parachute
1223	Bathroom accessory
1221	Earrings
1218	Headphones
1198	Skirt
1190	Skateboard
1148	Sandwich
1141	Saxophone
1136	Goldfish
1104	Stool
1097	Traffic light
1081	Shellfish
1079	Backpack
1078	Sea turtle
1075	Cucumber
1051	Tea
1047	Toilet
1040	Roller skates
1039	Mule
1031	Bust
1030	Broccoli
1020	Crab
1019	Oyster
1012	Cannon
1012	Zebra
1008	French horn
998	Grapefruit
997	Whiteboard
997	Zucchini
992	Crocodile
960	Clock
958	Wall clock
869	Doughnut
868	Snail
859	Baseball glove
830	Panda
830	Tennis racket
652	Pear
617	Bagel
616	Oven
615	Ladybug
615	Shark
614	Polar bear
609	Ostrich
473	Hot dog
467	Microwave oven
20	Fire hydrant
20	Stop sign
20	Parking meter
20	Bear
20	Flying disc
20	Snowboard
20	Tennis ball
20	Kite
20	Baseball bat
20	Kitchen knife
20	Knife
20	Submarine sandwich
20	Computer mouse
20	Remote control
20	Toaster
20	Sink
20	Refrigerator
20	Alarm clock
20	Wall clock
20	Scissors
20	Hair dryer
20	Toothbrush
20	Suitcase
"""

top_300_classes_plus_coco_compatibility: list[tuple[str, int]] = [
    (name, int(count)) for count, name in (line.split("\t") for line in _TOP_CLASSES.strip().splitlines())
]
